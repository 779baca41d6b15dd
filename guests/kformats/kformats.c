/* One probe, packaged as the kernel formats hvhost loads without firmware (a PVH ELF32,
 * a multiboot ELF32, a Linux bzImage entered at 32 bits and, built 64-bit, one entered in
 * long mode). Each entry stub hands over what its protocol passes; the probe prints it on
 * COM1 and exits through port 0x501: 0 when it is all as the protocol says, 1 otherwise. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
/* A guest-physical address the protocol passes as a 32-bit field, as a pointer. */
typedef unsigned long uptr;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static void putc(char c) {
    while (!(inb(0x3FD) & 0x20)) {}
    outb(0x3F8, (u8)c);
}
static void puts(const char *s) { while (*s) putc(*s++); }
static void putu(u32 v) {
    char b[11];
    int i = 10;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts(b + i);
}
static void putsn(const char *s, u32 n) { while (n-- && *s) putc(*s++); }

static void __attribute__((noreturn)) finish(int ok) {
    puts(ok ? "kformat: ok\r\n" : "kformat: FAILED\r\n");
    outb(0x501, ok ? 0 : 1);
    for (;;) __asm__ volatile("cli; hlt");
}

/* Sums E820-style RAM entries above 1 MiB, in KiB. */
static u32 ram_above_1m_kib(const u8 *map, u32 count, u32 stride, u32 base_off) {
    u64 total = 0;
    for (u32 i = 0; i < count; i++) {
        const u8 *e = map + i * stride + base_off;
        u64 addr = *(const u64 *)e, len = *(const u64 *)(e + 8);
        u32 type = *(const u32 *)(e + 16);
        if (type == 1 && addr >= 0x100000) total += len;
    }
    return (u32)(total >> 10);
}

void pvh_main(const u32 *si) {
    int ok = si[0] == 0x336ec578;
    const char *cmdline = (const char *)(uptr)*(const u64 *)(si + 6);
    u32 entries = si[12];
    puts("kformat: pvh32 magic ");
    puts(ok ? "ok" : "bad");
    puts(" cmdline=");
    puts(cmdline);
    puts(" memmap=");
    putu(entries);
    puts(" ram_kib=");
    putu(ram_above_1m_kib((const u8 *)(uptr)*(const u64 *)(si + 10), entries, 24, 0));
    puts("\r\n");
    finish(ok && entries > 0);
}

void multiboot_main(u32 magic, const u32 *mbi) {
    int ok = magic == 0x2BADB002 && (mbi[0] & 0x4D) == 0x4D;
    puts("kformat: multiboot magic ");
    puts(magic == 0x2BADB002 ? "ok" : "bad");
    puts(" mem_lower=");
    putu(mbi[1]);
    puts(" mem_upper=");
    putu(mbi[2]);
    puts(" cmdline=");
    puts((const char *)(uptr)mbi[4]);
    u32 mmap_len = mbi[11];
    puts(" mmap=");
    putu(mmap_len / 24);
    puts(" ram_kib=");
    putu(ram_above_1m_kib((const u8 *)(uptr)mbi[12], mmap_len / 24, 24, 4));
    puts(" mods=");
    putu(mbi[5]);
    if (mbi[5] > 0) {
        const u32 *mod = (const u32 *)(uptr)mbi[6];
        puts(" mod0=");
        puts((const char *)(uptr)mod[2]);
        puts(":");
        putsn((const char *)(uptr)mod[0], mod[1] - mod[0]);
    }
    puts("\r\n");
    finish(ok);
}

void linux_main(const u8 *bp) {
    int ok = *(const u32 *)(bp + 0x202) == 0x53726448 && bp[0x210] == 0xFF;
    u32 entries = bp[0x1E8];
#ifdef __x86_64__
    puts("kformat: linux64 header ");
#else
    puts("kformat: linux header ");
#endif
    puts(ok ? "ok" : "bad");
    puts(" cmdline=");
    puts((const char *)(uptr)*(const u32 *)(bp + 0x228));
    puts(" e820=");
    putu(entries);
    puts(" ram_kib=");
    putu(ram_above_1m_kib(bp + 0x2D0, entries, 20, 0));
    u32 initrd = *(const u32 *)(bp + 0x218), size = *(const u32 *)(bp + 0x21C);
    puts(" initrd=");
    putsn((const char *)(uptr)initrd, size);
    puts("\r\n");
    finish(ok && entries > 0);
}
