/*
 * smp: application-processor start-up path.
 *
 * ap_tramp_start..ap_tramp_end is a position-independent real-mode blob that the
 * BSP copies to a page below 1 MiB; the SIPI vector is that page >> 12, so the AP
 * starts there with CS = page >> 4, IP = 0. The blob sets a "started" byte in its
 * own page, loads a temporary GDT (flat 32-bit code/data + a 64-bit code segment,
 * in the image above 1 MiB: lgdtl takes a 32-bit base) and far-jumps to ap_pm32,
 * which lives in the image at its link address (flat segments, so no fix-ups).
 * ap_pm32 enables PAE, loads the runtime's static page tables (pml4), sets
 * EFER.LME and CR0.PG, and jumps to 64-bit code that switches to the runtime's GDT,
 * takes the stack the BSP left in ap_stack_ptr and calls ap_main() in C.
 *
 * All of this runs in the PVM host's instruction emulator (~2 M instr/s): it is
 * a few dozen instructions.
 */
#define TMP_CODE32 0x08
#define TMP_DATA   0x10
#define TMP_CODE64 0x18
#define KCODE      0x08
#define KDATA      0x10

        .text
        .code16
        .globl  ap_tramp_start
ap_tramp_start:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        movb    $1, (ap_tramp_flag - ap_tramp_start)
        lgdtl   (ap_tramp_gdtr - ap_tramp_start)
        movl    %cr0, %eax
        orl     $1, %eax                /* PE */
        movl    %eax, %cr0
        ljmpl   $TMP_CODE32, $ap_pm32   /* absolute: ap_pm32 is in the image */

        .balign 8
        .word   0                       /* align the base of the pseudo-descriptor */
ap_tramp_gdtr:
        .word   ap_gdt_end - ap_gdt - 1
        .long   ap_gdt
        .globl  ap_tramp_flag
ap_tramp_flag:                          /* set to 1 by the AP in real mode */
        .byte   0
        .globl  ap_tramp_end
ap_tramp_end:

        .code32
ap_pm32:
        movl    $TMP_DATA, %eax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    %cr0, %eax
        andl    $0x9FFFFFFF, %eax       /* clear CD | NW (INIT sets them) */
        movl    %eax, %cr0
        movl    %cr4, %eax
        orl     $0x20, %eax             /* PAE */
        movl    %eax, %cr4
        movl    $pml4, %eax             /* the runtime's static 0-4 GiB identity map */
        movl    %eax, %cr3
        movl    $0xC0000080, %ecx       /* IA32_EFER */
        rdmsr
        orl     $0x100, %eax            /* LME */
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax       /* PG | PE */
        movl    %eax, %cr0
        ljmp    $TMP_CODE64, $ap_lm64

        .code64
ap_lm64:
        lgdt    gdt_ptr(%rip)           /* the runtime's GDT */
        movl    $KDATA, %eax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movq    ap_stack_ptr(%rip), %rsp
        pushq   $KCODE
        leaq    1f(%rip), %rax
        pushq   %rax
        lretq
1:      xorl    %ebp, %ebp
        call    ap_main
2:      cli
        hlt
        jmp     2b

        .data
        .balign 16
ap_gdt:
        .quad   0                       /* null */
        .quad   0x00CF9A000000FFFF      /* 0x08 code, 32-bit, flat */
        .quad   0x00CF92000000FFFF      /* 0x10 data, flat */
        .quad   0x00AF9A000000FFFF      /* 0x18 code, 64-bit */
ap_gdt_end:

        .section .note.GNU-stack, "", @progbits
