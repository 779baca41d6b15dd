/*
 * hvhost test-guest runtime. Freestanding, 64-bit, single CPU.
 * See guests/README.md for the boot contract.
 */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ exit codes */
/* guest_exit(v): QEMU isa-debug-exit status = (v << 1) | 1. 0 = pass. */
#define EXIT_PASS          0
#define EXIT_FAIL          1
#define EXIT_EXCEPTION(v)  (0x40 + (v))   /* unhandled CPU exception v */
#define EXIT_UNEXPECTED_IRQ 0x3f

/* ------------------------------------------------------------- port I/O */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---------------------------------------------------------------- MMIO */
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)a; }
static inline void mmio_write64(uint64_t a, uint64_t v) { *(volatile uint64_t *)a = v; }

/* ------------------------------------------------------------------ CPU */
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
/* Idle until the next interrupt: atomically enable interrupts and halt (the
 * STI shadow covers HLT), then disable again. Call with IF=0; re-check your
 * condition after it returns. */
static inline void wait_irq(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }
static inline unsigned cpl(void) { uint16_t cs; __asm__ volatile("mov %%cs, %0" : "=r"(cs)); return cs & 3; }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }

/* ------------------------------------------------------- serial, printf */
void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
int serial_getc(void); /* -1 when no byte is waiting */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);

/* Print "EXIT <v>", write v to the isa-debug-exit port 0x501, halt forever.
 * Callable from ring 3 too (IOPL=3). */
__attribute__((noreturn)) void guest_exit(uint8_t v);
/* printf a message, then guest_exit(v). */
__attribute__((noreturn, format(printf, 2, 3))) void fail(uint8_t v, const char *fmt, ...);

/* ---------------------------------------------------------- libc bits */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* --------------------------------------------------- PVH start info */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;   /* version >= 1 */
    uint32_t memmap_entries; /* version >= 1 */
    uint32_t reserved;
};
struct hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* 1 = RAM */
    uint32_t reserved;
};
extern const struct hvm_start_info *start_info; /* NULL if absent/invalid */
extern uint32_t boot_path;                       /* 32 = PVH entry, 64 = long-mode entry */
uint64_t mem_ram_bytes(void);                    /* sum of type-1 memmap entries */
const char *cmdline(void);                       /* "" if none */
/* The leading decimal digits of "name=<digits>" on the command line (0 if none follow
 * the '='); `dflt` when `name=` is absent. */
uint64_t cmdline_u64(const char *name, uint64_t dflt);

/* The guest program. Its return value is passed to guest_exit(). */
int main(void);

/* ---------------------------------------------------------- interrupts */
struct int_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*int_handler_t)(struct int_frame *f);
/* Vectors 0-31 are exceptions (print + exit EXIT_EXCEPTION(v) unless a handler
 * is installed); 0x80 is the ring-3 syscall gate; others dispatch here. */
void set_int_handler(uint8_t vector, int_handler_t h);
void idt_load_default(void); /* re-load the runtime IDT */

/* 8259 PIC: master -> 0x20..0x27, slave -> 0x28..0x2f, all masked. */
#define PIC_VECTOR(irq) (0x20 + (irq))
void pic_init(void);
void pic_unmask(unsigned irq);  /* irq >= 8 also unmasks the cascade IRQ2 */
void pic_mask(unsigned irq);
void pic_eoi(unsigned irq);
/* PIT channel 0, mode 2 (rate generator), on IRQ0. */
void pit_init_periodic(uint32_t hz);
void pit_stop(void);

/* Local APIC (xAPIC MMIO). */
#define LAPIC_BASE          0xFEE00000ull
#define LAPIC_ID            0x020
#define LAPIC_VERSION       0x030
#define LAPIC_TPR           0x080
#define LAPIC_EOI           0x0B0
#define LAPIC_SVR           0x0F0
#define LAPIC_LVT_TIMER     0x320
#define LAPIC_LVT_LINT0     0x350
#define LAPIC_LVT_LINT1     0x360
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE  0x3E0
#define LAPIC_SPURIOUS_VECTOR 0xFF
static inline uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
/* SVR enable + spurious 0xFF, LINT0 = ExtINT (virtual wire), LINT1 = NMI. */
void lapic_enable(void);
static inline void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
/* Periodic timer on `vector`; divide is 1,2,4,...,128. */
void lapic_timer_periodic(uint8_t vector, unsigned divide, uint32_t initial_count);
void lapic_timer_stop(void);

/* CMOS RTC. */
uint8_t cmos_read(uint8_t reg);
/* Current seconds (0-59, binary), or -1 while an update is in progress. */
int rtc_seconds(void);
/* Read h:m:s (binary, 24h); waits out UIP. */
void rtc_time(int *h, int *m, int *s);

/* ----------------------------------------------------------------- PCI */
struct pci_dev {
    uint8_t bus, dev, fn;
    uint16_t vendor, device;
    uint8_t class_code, subclass, prog_if, revision;
    uint8_t header_type; /* without the multifunction bit */
    uint8_t irq_line, irq_pin;
};
enum pci_bar_type { PCI_BAR_NONE = 0, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };
struct pci_bar {
    enum pci_bar_type type;
    bool prefetchable;
    uint64_t addr;
    uint64_t size;
};
#define PCI_COMMAND        0x04
#define PCI_CMD_IO         0x0001
#define PCI_CMD_MEM        0x0002
#define PCI_CMD_MASTER     0x0004
#define PCI_CMD_INTX_DISABLE 0x0400
#define PCI_BAR0           0x10
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN  0x3D

uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);
uint16_t pci_read16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);
uint8_t pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off);
void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v);
void pci_write16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint16_t v);
void pci_write8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint8_t v);
/* Fill *d for bus:dev.fn; false if nothing there. */
bool pci_probe(uint8_t bus, uint8_t dev, uint8_t fn, struct pci_dev *d);
/* Enumerate bus 0 (all 32 devices; functions 1-7 only for multifunction
 * devices). Calls cb for each function found; returns the count. */
int pci_scan(void (*cb)(const struct pci_dev *d, void *ctx), void *ctx);
bool pci_find(uint16_t vendor, uint16_t device, struct pci_dev *out);
/* Size BAR i (decode disabled while sizing; restored). Returns the number of
 * BAR slots it occupies (2 for mem64, else 1); b->type NONE if unimplemented. */
int pci_bar(const struct pci_dev *d, int i, struct pci_bar *b);
int pci_bar_count(const struct pci_dev *d); /* 6, 2 for bridges, 0 otherwise */
void pci_enable(const struct pci_dev *d, uint16_t cmd_bits);

/* ------------------------------------------------------------- ring 3 */
/* Run fn at CPL3 (IOPL=3 so it can do port I/O, IF=1) on the given stack.
 * Returns fn's return value, or the value passed to sys_exit(). */
uint64_t run_user(uint64_t (*fn)(void), void *user_stack_top);
extern uint8_t user_stack_top[]; /* a 64 KiB default user stack */
/* IN/OUT instructions from ring 3 that faulted (host ignores IOPL) and were
 * emulated by the #GP handler. 0 on VT-x/AMD-V hosts. */
extern uint64_t user_pio_emulated;
/* Ring-3 `int $0x80` that arrived as #UD (PVM host) and was treated as the
 * syscall gate. 0 on VT-x/AMD-V hosts. */
extern uint64_t user_int80_via_ud;
#define SYS_EXIT 0
#define SYS_PUTC 1
static inline uint64_t syscall1(uint64_t nr, uint64_t a0)
{
    uint64_t ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "D"(a0) : "memory");
    return ret;
}
__attribute__((noreturn)) static inline void sys_exit(uint64_t v)
{
    syscall1(SYS_EXIT, v);
    __builtin_unreachable();
}
