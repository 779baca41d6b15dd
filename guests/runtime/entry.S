/*
 * hvhost test-guest runtime: boot entry points, GDT/TSS, static page tables,
 * interrupt stubs and the ring-3 trampolines.
 *
 * Two ways in (see guests/README.md):
 *   entry32  - PVH (XEN_ELFNOTE_PHYS32_ENTRY): 32-bit protected mode, paging
 *              off, EBX = physical address of struct hvm_start_info.
 *   entry64  - ELF e_entry: already in long mode with an identity map of at
 *              least the first 4 GiB, RBX = physical address of hvm_start_info.
 * Both end in common64, which loads our own GDT, page tables and stack and
 * calls rt_start(start_info) in C.
 *
 * Everything here runs at CPL0, which the PVM host emulates at ~2 M instr/s:
 * the page tables are therefore fully static (built by the assembler), and
 * only the small .bss is zeroed at runtime.
 */

#define KCODE   0x08
#define KDATA   0x10
#define UDATA   0x18
#define UCODE   0x20
#define TSSSEL  0x28

/* ---------------------------------------------------------------- PVH note */
        .section .note.pvh, "a"
        .balign 4
        .long   4               /* namesz: "Xen\0" */
        .long   4               /* descsz: 32-bit physical entry */
        .long   18              /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz  "Xen"
        .long   entry32

/* ------------------------------------------------------------ entry points */
        .section .text.boot, "ax"
        .code32
        .globl  entry32
entry32:
        cli
        cld
        lgdt    gdt_ptr                 /* base < 4 GiB: first 6 bytes suffice */
        movl    $KDATA, %eax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    %cr4, %eax
        orl     $0x20, %eax             /* CR4.PAE */
        movl    %eax, %cr4
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    $0xC0000080, %ecx       /* IA32_EFER */
        rdmsr
        orl     $0x100, %eax            /* LME */
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax       /* PG | PE */
        movl    %eax, %cr0
        movl    $32, boot_path
        ljmp    $KCODE, $from32

        .code64
from32:
        movl    %ebx, %ebx              /* zero-extend start_info pointer */
        jmp     common64

        .globl  entry64
entry64:
        cli
        cld
        movl    $64, boot_path
common64:
        lgdt    gdt_ptr
        movl    $KDATA, %eax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movq    $kstack_top, %rsp
        pushq   $KCODE
        pushq   $1f
        lretq                           /* reload CS from our GDT */
1:      movq    $pml4, %rax
        movq    %rax, %cr3
        /* zero .bss (kept small; stacks and the IDT live in .noinit) */
        movq    $__bss_start, %rdi
        movq    $__bss_end, %rcx
        subq    %rdi, %rcx
        shrq    $3, %rcx
        xorl    %eax, %eax
        rep stosq
        movq    %rbx, %rdi
        call    rt_start
2:      cli
        hlt
        jmp     2b

/* ------------------------------------------------------- interrupt stubs */
/* 256 stubs, 16 bytes apart: isr_stubs + 16 * vector. */
        .text
        .balign 16
        .globl  isr_stubs
isr_stubs:
        .set    vec, 0
        .rept   256
        .balign 16
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushq   $0                      /* no CPU error code: push a dummy */
        .endif
        pushq   $vec
        jmp     isr_common
        .set    vec, vec + 1
        .endr

isr_common:
        pushq   %rax
        pushq   %rcx
        pushq   %rdx
        pushq   %rbx
        pushq   %rbp
        pushq   %rsi
        pushq   %rdi
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, %rdi              /* struct int_frame * */
        cld
        call    isr_dispatch
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rdi
        popq    %rsi
        popq    %rbp
        popq    %rbx
        popq    %rdx
        popq    %rcx
        popq    %rax
        addq    $16, %rsp               /* vector + error code */
        iretq

/* --------------------------------------------------------------- ring 3 */
/*
 * uint64_t run_user(uint64_t (*fn)(void), void *user_stack_top)
 * Enters fn at CPL3 (IOPL=3, IF=1) on the given stack. Returns the value that
 * ring 3 passes to syscall 0 (int $0x80, RAX=0, RDI=value); returning from fn
 * does that automatically with fn's return value.
 */
        .globl  run_user
run_user:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        pushfq
        movq    %rsp, saved_krsp
        movq    %rsp, tss + 4           /* TSS.RSP0: traps from ring 3 land below us */
        andq    $-16, %rsi
        subq    $8, %rsi                /* ABI: rsp+8 16-aligned at function entry */
        movq    $user_return, (%rsi)
        pushq   $(UDATA | 3)            /* SS */
        pushq   %rsi                    /* RSP */
        pushq   $0x3202                 /* RFLAGS: IOPL=3, IF=1 */
        pushq   $(UCODE | 3)            /* CS */
        pushq   %rdi                    /* RIP */
        xorl    %eax, %eax
        xorl    %ebx, %ebx
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        xorl    %ebp, %ebp
        xorl    %esi, %esi
        xorl    %edi, %edi
        xorl    %r8d, %r8d
        xorl    %r9d, %r9d
        xorl    %r10d, %r10d
        xorl    %r11d, %r11d
        iretq

        .globl  user_return
user_return:                            /* ring 3: fn returned in RAX */
        movq    %rax, %rdi
        xorl    %eax, %eax              /* syscall 0: exit to kernel */
        int     $0x80
        ud2

/* void user_exit_to_kernel(uint64_t value): called by the int 0x80 handler */
        .globl  user_exit_to_kernel
user_exit_to_kernel:
        movq    saved_krsp, %rsp
        movq    %rdi, %rax
        popfq
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret

/* ----------------------------------------------------------------- data */
        .data
        .balign 16
        .globl  gdt
gdt:
        .quad   0                       /* 0x00 null */
        .quad   0x00AF9A000000FFFF      /* 0x08 kernel code, 64-bit */
        .quad   0x00CF92000000FFFF      /* 0x10 kernel data */
        .quad   0x00CFF2000000FFFF      /* 0x18 user data, DPL3 */
        .quad   0x00AFFA000000FFFF      /* 0x20 user code, 64-bit, DPL3 */
        .globl  gdt_tss
gdt_tss:
        .quad   0, 0                    /* 0x28 TSS (filled by tss_init) */
gdt_end:
        .balign 8
        .word   0, 0, 0                 /* so the 8-byte base is aligned */
        .globl  gdt_ptr
gdt_ptr:
        .word   gdt_end - gdt - 1
        .quad   gdt

        .balign 16
        .globl  tss
tss:
        .fill   104, 1, 0
        .globl  boot_path
boot_path:
        .long   0
        .balign 8
saved_krsp:
        .quad   0

/*
 * Identity map of 0..4 GiB with 2 MiB pages, U/S set everywhere (ring 3 may
 * touch anything). 3..4 GiB (LAPIC, IOAPIC, PCI BARs) is PCD|PWT.
 */
#define PG_P    0x01
#define PG_RW   0x02
#define PG_US   0x04
#define PG_PWT  0x08
#define PG_PCD  0x10
#define PG_PS   0x80
        .balign 4096
        .globl  pml4
pml4:
        .quad   pdpt + (PG_P | PG_RW | PG_US)
        .fill   511, 8, 0
pdpt:
        .quad   pd + 0x0000 + (PG_P | PG_RW | PG_US)
        .quad   pd + 0x1000 + (PG_P | PG_RW | PG_US)
        .quad   pd + 0x2000 + (PG_P | PG_RW | PG_US)
        .quad   pd + 0x3000 + (PG_P | PG_RW | PG_US)
        .fill   508, 8, 0
pd:
        .set    addr, 0
        .rept   1536
        .quad   addr + (PG_P | PG_RW | PG_US | PG_PS)
        .set    addr, addr + 0x200000
        .endr
        .rept   512
        .quad   addr + (PG_P | PG_RW | PG_US | PG_PS | PG_PCD | PG_PWT)
        .set    addr, addr + 0x200000
        .endr

/* --------------------------------------------------- stacks (not zeroed) */
        .section .noinit, "aw", @nobits
        .balign 16
kstack:
        .skip   16384
        .globl  kstack_top
kstack_top:
        .balign 16
ustack:
        .skip   65536
        .globl  user_stack_top
user_stack_top:

        .section .note.GNU-stack, "", @progbits
