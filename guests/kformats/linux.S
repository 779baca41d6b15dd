/* The entries of the Linux boot protocol, first in the protected-mode kernel (loaded at
 * 1 MiB). Built 32-bit: the 32-bit entry at the start, ESI = boot_params. Built 64-bit
 * (__x86_64__): the 64-bit entry at start + 0x200 in long mode, RSI = boot_params; its
 * 32-bit entry fails the probe, since a loader must take the 64-bit one the header offers. */
        .text
        .globl  _start
_start:
#ifdef __x86_64__
        .code32
        mov     $0x501, %dx
        mov     $1, %al
        outb    %al, %dx
        hlt
        .org    0x200
        .code64
        mov     $stack_top, %esp
        mov     %rsi, %rdi
        call    linux_main
#else
        mov     $stack_top, %esp
        push    %esi
        call    linux_main
#endif
        .bss
        .p2align 4
        .skip   8192
stack_top:
