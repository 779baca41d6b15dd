/*
 * kvm-run64: a minimal raw-KVM loader that boots a test guest through its
 * 64-bit ELF entry (e_entry), the way the hvhost VMM may: long mode, paging on
 * with an identity map of 0-4 GiB, interrupts off, RBX = hvm_start_info.
 * QEMU only exercises the PVH (32-bit) entry, so this checks the other one.
 *
 * Deliberately different from the runtime's own setup (GDT layout with CS at
 * 0x10, 1 GiB of 2 MiB pages + 3 more, a garbage RSP) so the guest has to
 * reload everything itself. Devices: COM1 output, isa-debug-exit at 0x501,
 * PCI config reads return "nothing there", everything else reads as 0xFF.
 * No interrupt controller: only guests that don't wait for interrupts
 * (hello, triple-fault) can run here.
 *
 * Usage: kvm-run64 guest.elf [cmdline]
 * Exit status: like QEMU isa-debug-exit, (v << 1) | 1; 0 on a triple fault
 * (shutdown); 125 on a harness error.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_SIZE (128ull << 20)
#define PML4 0x1000
#define PDPT 0x2000
#define PD0 0x3000 /* 4 PDs: 0x3000-0x6fff */
#define GDT 0x7000
#define START_INFO 0x8000
#define MEMMAP 0x8100
#define CMDLINE 0x8200

static void die(const char *what)
{
    fprintf(stderr, "kvm-run64: %s: %s\n", what, strerror(errno));
    exit(125);
}

static void load_elf(uint8_t *mem, const char *path, uint64_t *entry)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path);
    struct stat st;
    fstat(fd, &st);
    uint8_t *f = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f == MAP_FAILED)
        die("mmap elf");
    Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "kvm-run64: %s: not an ELF64 file\n", path);
        exit(125);
    }
    Elf64_Phdr *ph = (Elf64_Phdr *)(f + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        if (ph[i].p_paddr + ph[i].p_memsz > MEM_SIZE) {
            fprintf(stderr, "kvm-run64: segment outside RAM\n");
            exit(125);
        }
        memcpy(mem + ph[i].p_paddr, f + ph[i].p_offset, ph[i].p_filesz);
        memset(mem + ph[i].p_paddr + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
    }
    *entry = eh->e_entry;
    munmap(f, st.st_size);
    close(fd);
}

static void setup_boot_data(uint8_t *mem, const char *cmdline)
{
    uint64_t *pml4 = (uint64_t *)(mem + PML4), *pdpt = (uint64_t *)(mem + PDPT);
    pml4[0] = PDPT | 3;
    for (int i = 0; i < 4; i++) {
        pdpt[i] = (PD0 + 0x1000 * i) | 3;
        uint64_t *pd = (uint64_t *)(mem + PD0 + 0x1000 * i);
        for (int j = 0; j < 512; j++)
            pd[j] = ((uint64_t)(i * 512 + j) << 21) | 0x83; /* P RW PS */
    }
    uint64_t *gdt = (uint64_t *)(mem + GDT);
    gdt[0] = 0;
    gdt[1] = 0x00CF92000000FFFF; /* 0x08 data */
    gdt[2] = 0x00AF9A000000FFFF; /* 0x10 code64 */

    struct {
        uint32_t magic, version, flags, nr_modules;
        uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
        uint32_t memmap_entries, reserved;
    } si = {0x336ec578, 1, 0, 0, 0, cmdline ? CMDLINE : 0, 0, MEMMAP, 2, 0};
    struct {
        uint64_t addr, size;
        uint32_t type, reserved;
    } mm[2] = {{0, 0x9fc00, 1, 0}, {0x100000, MEM_SIZE - 0x100000, 1, 0}};
    memcpy(mem + START_INFO, &si, sizeof si);
    memcpy(mem + MEMMAP, mm, sizeof mm);
    if (cmdline)
        snprintf((char *)mem + CMDLINE, 256, "%s", cmdline);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kvm-run64 guest.elf [cmdline]\n");
        return 125;
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap guest memory");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");

    uint64_t entry;
    load_elf(mem, argv[1], &entry);
    setup_boot_data(mem, argc > 2 ? argv[2] : NULL);

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + nent * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = nent;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
        die("KVM_SET_CPUID2");
    int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    struct kvm_sregs sr;
    if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0)
        die("KVM_GET_SREGS");
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 11,
                               .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x08;
    data.type = 3;
    data.l = 0;
    data.db = 1;
    sr.cs = code;
    sr.ds = sr.es = sr.fs = sr.gs = sr.ss = data;
    sr.gdt.base = GDT;
    sr.gdt.limit = 3 * 8 - 1;
    sr.cr3 = PML4;
    sr.cr4 = 0x20;                    /* PAE */
    sr.cr0 = 0x80000001 | 0x10 | 0x20; /* PG PE ET NE */
    sr.efer = 0x500;                  /* LME LMA */
    if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs r = {0};
    r.rip = entry;
    r.rbx = START_INFO;
    r.rsp = 0xdead0000; /* unspecified: the runtime must not use it */
    r.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &r) < 0)
        die("KVM_SET_REGS");

    uint8_t lcr = 0; /* COM1 line control: DLAB (bit 7) redirects 0x3F8/9 to the divisor */
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            die("KVM_RUN");
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *d = (uint8_t *)run + run->io.data_offset;
            for (uint32_t i = 0; i < run->io.count; i++, d += run->io.size) {
                uint16_t port = run->io.port;
                if (run->io.direction == KVM_EXIT_IO_OUT) {
                    if (port == 0x3FB) {
                        lcr = d[0];
                    } else if (port == 0x3F8 && !(lcr & 0x80)) {
                        fputc(d[0], stdout);
                        fflush(stdout);
                    } else if (port == 0x501) {
                        return (d[0] << 1) | 1;
                    }
                } else {
                    memset(d, 0xFF, run->io.size);
                    if (port == 0x3FD) /* LSR: THR empty, transmitter idle */
                        d[0] = 0x60;
                }
            }
            break;
        }
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xFF, sizeof run->mmio.data);
            break;
        case KVM_EXIT_HLT:
            fprintf(stderr, "kvm-run64: guest halted\n");
            return 124;
        case KVM_EXIT_SHUTDOWN:
            fprintf(stderr, "kvm-run64: shutdown (triple fault)\n");
            return 0;
        case KVM_EXIT_INTERNAL_ERROR:
            fprintf(stderr, "kvm-run64: internal error, suberror %u\n", run->internal.suberror);
            return 125;
        case KVM_EXIT_FAIL_ENTRY:
            fprintf(stderr, "kvm-run64: entry failed, reason 0x%llx\n",
                    (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            return 125;
        default:
            fprintf(stderr, "kvm-run64: unhandled exit %u\n", run->exit_reason);
            return 125;
        }
    }
}
