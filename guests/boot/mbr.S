/* A 512-byte master boot record for the firmware tests. SeaBIOS loads it at 0x7C00
 * (real mode, DL = boot drive) from whatever disk it booted; it prints one line with
 * the drive number on COM1 (polling the 16550's THRE bit, no BIOS calls) and leaves
 * through the isa-debug-exit port 0x501 with 0x31 (hvhost/QEMU status 99). */
        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        mov     $0x7C00, %sp
        mov     %dl, %bh                /* the boot drive, printed below */
        mov     $message, %si
        call    puts
        mov     %bh, %al
        shr     $4, %al
        call    puthex
        mov     %bh, %al
        call    puthex
        mov     $newline, %si
        call    puts
exit:
        mov     $0x501, %dx
        mov     $0x31, %al
        outb    %al, %dx
        hlt
        jmp     exit

/* Prints the NUL-terminated string at DS:SI. */
puts:
        lodsb
        test    %al, %al
        jz      1f
        call    putc
        jmp     puts
1:      ret

/* Prints the low nibble of AL as a hex digit. */
puthex:
        and     $0x0F, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     putc
        add     $('a' - '9' - 1), %al
        /* fall through */

/* Writes AL to COM1 once its transmitter holding register is empty. */
putc:
        mov     %al, %bl
        mov     $0x3FD, %dx
1:      inb     %dx, %al
        test    $0x20, %al
        jz      1b
        mov     $0x3F8, %dx
        mov     %bl, %al
        outb    %al, %dx
        ret

message:
        .asciz  "mbr: booted by the BIOS from drive 0x"
newline:
        .asciz  "\r\n"

        .org    510
        .byte   0x55, 0xAA
