/* PVH entry: 32-bit flat mode, EBX = hvm_start_info; the ELF note names the entry. */
        .section .note.Xen, "a"
        .p2align 2
        .long   4, 4, 18                /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz  "Xen"
        .long   _start
        .text
        .globl  _start
_start:
        mov     $stack_top, %esp
        push    %ebx
        call    pvh_main
        .bss
        .p2align 4
        .skip   8192
stack_top:
