/* The 32-bit entry of the Linux boot protocol, first in the protected-mode kernel
 * (loaded at 1 MiB): ESI = boot_params. */
        .text
        .globl  _start
_start:
        mov     $stack_top, %esp
        push    %esi
        call    linux_main
        .bss
        .p2align 4
        .skip   8192
stack_top:
