/* Multiboot v1 entry: EAX = 0x2BADB002, EBX = the multiboot information structure.
 * Header flags: page-align modules (0), memory information (1). */
        .text
        .p2align 2
        .long   0x1BADB002, 0x00000003, -(0x1BADB002 + 0x00000003)
        .globl  _start
_start:
        mov     $stack_top, %esp
        push    %ebx
        push    %eax
        call    multiboot_main
        .bss
        .p2align 4
        .skip   8192
stack_top:
