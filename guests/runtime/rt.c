/* Runtime core: C entry, start info, exit, IDT/TSS, interrupt dispatch. */
#include "rt.h"

const struct hvm_start_info *start_info;

/* ----------------------------------------------------------------- exit */
#define DEBUG_EXIT_PORT 0x501

void guest_exit(uint8_t v)
{
    printf("EXIT %u\n", v);
    outb(DEBUG_EXIT_PORT, v);
    if (cpl() == 0)
        for (;;)
            __asm__ volatile("cli; hlt");
    for (;;)
        pause();
}

void fail(uint8_t v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    va_end(ap);
    guest_exit(v);
}

/* ---------------------------------------------------------- start info */
uint64_t mem_ram_bytes(void)
{
    if (!start_info || start_info->version < 1 || !start_info->memmap_paddr)
        return 0;
    const struct hvm_memmap_entry *e = (const void *)start_info->memmap_paddr;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < start_info->memmap_entries; i++)
        if (e[i].type == 1)
            sum += e[i].size;
    return sum;
}

const char *cmdline(void)
{
    if (!start_info || !start_info->cmdline_paddr)
        return "";
    return (const char *)start_info->cmdline_paddr;
}

uint64_t cmdline_u64(const char *name, uint64_t dflt)
{
    const char *s = cmdline();
    size_t n = strlen(name);
    for (; *s; s++) {
        if ((s == cmdline() || s[-1] == ' ') && strncmp(s, name, n) == 0 && s[n] == '=') {
            uint64_t v = 0;
            for (s += n + 1; *s >= '0' && *s <= '9'; s++)
                v = v * 10 + (uint64_t)(*s - '0');
            return v;
        }
    }
    return dflt;
}

/* ------------------------------------------------------------ IDT, TSS */
struct idt_gate {
    uint16_t off_lo, sel;
    uint8_t ist, type_attr;
    uint16_t off_mid;
    uint32_t off_hi, zero;
};
/* Not in .bss: every entry is written by idt_init (keeps .bss zeroing tiny). */
static struct idt_gate idt[256] __attribute__((section(".bss.noinit.idt"), aligned(16)));
static int_handler_t handlers[256];

extern char isr_stubs[];
extern uint64_t gdt_tss[2];
extern uint8_t tss[104];
extern void user_exit_to_kernel(uint64_t value) __attribute__((noreturn));

struct __attribute__((packed)) desc_ptr {
    uint16_t limit;
    uint64_t base;
};

void idt_load_default(void)
{
    struct desc_ptr p = {sizeof(idt) - 1, (uint64_t)idt};
    __asm__ volatile("lidt %0" ::"m"(p));
}

static void idt_init(void)
{
    for (int v = 0; v < 256; v++) {
        uint64_t a = (uint64_t)isr_stubs + 16 * v;
        idt[v] = (struct idt_gate){
            .off_lo = (uint16_t)a,
            .sel = 0x08,
            .ist = 0,
            /* P | 64-bit interrupt gate; the syscall gate is DPL3 */
            .type_attr = (uint8_t)(v == 0x80 ? 0xEE : 0x8E),
            .off_mid = (uint16_t)(a >> 16),
            .off_hi = (uint32_t)(a >> 32),
            .zero = 0,
        };
    }
    idt_load_default();
}

static void tss_init(void)
{
    uint64_t base = (uint64_t)tss;
    /* iomap base beyond the limit: no I/O bitmap (ring 3 relies on IOPL=3) */
    tss[102] = 104;
    tss[103] = 0;
    gdt_tss[0] = 103 | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) | (((base >> 24) & 0xFF) << 56);
    gdt_tss[1] = base >> 32;
    __asm__ volatile("ltr %w0" ::"r"(0x28));
}

void set_int_handler(uint8_t vector, int_handler_t h)
{
    handlers[vector] = h;
}

static const char *const exc_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound", "#UD invalid opcode", "#NM no FPU", "#DF double fault", "coproc overrun",
    "#TS invalid TSS", "#NP not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved", "#MF x87", "#AC alignment", "#MC machine check",
    "#XM SIMD", "#VE virtualization", "#CP control protection",
};

/*
 * Ring 3 runs with RFLAGS.IOPL=3 so it may use IN/OUT directly. The PVM host
 * runs guest ring 3 natively in host ring 3 and does not honour the guest's
 * IOPL, so there IN/OUT from ring 3 raises #GP(0): emulate it here ("virtual
 * IOPL"). On VT-x/AMD-V hosts these instructions never fault.
 */
uint64_t user_pio_emulated;
uint64_t user_int80_via_ud;

static bool emulate_user_pio(struct int_frame *f)
{
    /* run_user always grants IOPL=3, but PVM does not even report it back in
     * the trap frame (RFLAGS.IOPL reads 0), so don't check it here. */
    if ((f->cs & 3) != 3 || f->error != 0)
        return false;
    const uint8_t *ip = (const uint8_t *)f->rip;
    unsigned len = 0, size = 4;
    bool in;
    uint16_t port;
    if (ip[len] == 0x66) {
        size = 2;
        len++;
    }
    uint8_t op = ip[len++];
    switch (op) {
    case 0xE4: case 0xE5: case 0xE6: case 0xE7:
        port = ip[len++];
        break;
    case 0xEC: case 0xED: case 0xEE: case 0xEF:
        port = (uint16_t)f->rdx;
        break;
    default:
        return false;
    }
    if (!(op & 1))
        size = 1;
    in = !(op & 2);
    if (in) {
        switch (size) {
        case 1: f->rax = (f->rax & ~0xFFull) | inb(port); break;
        case 2: f->rax = (f->rax & ~0xFFFFull) | inw(port); break;
        default: f->rax = inl(port); break;
        }
    } else {
        switch (size) {
        case 1: outb(port, (uint8_t)f->rax); break;
        case 2: outw(port, (uint16_t)f->rax); break;
        default: outl(port, (uint32_t)f->rax); break;
        }
    }
    f->rip += len;
    user_pio_emulated++;
    return true;
}

void isr_dispatch(struct int_frame *f)
{
    unsigned v = (unsigned)f->vector;
    if (handlers[v]) {
        handlers[v](f);
        return;
    }
    if (v == 13 && emulate_user_pio(f))
        return;
    /*
     * The PVM host only has DPL3 gates for vectors 3, 4 and its own legacy
     * syscall vector; a guest ring-3 `int $0x80` reaches us as #UD with RIP at
     * the instruction. Treat it as the syscall gate (on VT-x/AMD-V the DPL3
     * gate 0x80 is taken directly).
     */
    if (v == 6 && (f->cs & 3) == 3) {
        const uint8_t *ip = (const uint8_t *)f->rip;
        if (ip[0] == 0xCD && ip[1] == 0x80) {
            f->rip += 2;
            user_int80_via_ud++;
            v = 0x80;
        }
    }
    if (v < 32) {
        uint64_t cr2;
        __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
        printf("EXCEPTION %u (%s) error=0x%lx rip=0x%lx cs=0x%lx rflags=0x%lx rsp=0x%lx cr2=0x%lx\n",
               v, exc_names[v] ? exc_names[v] : "?", f->error, f->rip, f->cs, f->rflags, f->rsp,
               cr2);
        guest_exit(EXIT_EXCEPTION(v));
    }
    if (v == 0x80) { /* ring-3 syscall: RAX = number, RDI = argument */
        switch (f->rax) {
        case SYS_EXIT:
            user_exit_to_kernel(f->rdi);
        case SYS_PUTC:
            serial_putc((char)f->rdi);
            f->rax = 0;
            return;
        default:
            f->rax = (uint64_t)-1;
            return;
        }
    }
    if (v == LAPIC_SPURIOUS_VECTOR)
        return; /* spurious: no EOI */
    if (v == PIC_VECTOR(7) || v == PIC_VECTOR(15)) {
        /* possibly a spurious 8259 IRQ; unhandled anyway */
        return;
    }
    printf("unexpected interrupt vector 0x%x rip=0x%lx\n", v, f->rip);
    guest_exit(EXIT_UNEXPECTED_IRQ);
}

/* -------------------------------------------------------------- C entry */
void rt_start(const struct hvm_start_info *si)
{
    serial_init();
    tss_init();
    idt_init();
    /* Firmware (SeaBIOS) leaves the 8259 at vector 8 with IRQ0 unmasked: remap
     * and mask everything before anything can set IF. */
    pic_init();
    start_info = (si && si->magic == HVM_START_MAGIC) ? si : NULL;
    printf("rt: entry=%s start_info=0x%lx%s\n", boot_path == 32 ? "pvh32" : "long64",
           (uint64_t)si, start_info ? "" : " (invalid)");
    int r = main();
    guest_exit((uint8_t)r);
}

/* ----------------------------------------------------------- libc bits */
void *memset(void *d, int c, size_t n)
{
    void *ret = d;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return ret;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *ret = d;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n)::"memory");
    return ret;
}

void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] - y[i];
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b || !*a)
            return (unsigned char)*a - (unsigned char)*b;
    }
    return 0;
}
