/*
 * triple-fault: an empty IDT (limit 0) plus ud2 -> #UD cannot be delivered ->
 * #GP cannot be delivered -> #DF cannot be delivered -> triple fault (shutdown).
 * ud2 rather than int3: on the PVM host CPL0 code is run by KVM's instruction
 * emulator, which fails on a CPL0 int3 ("emulation failure") instead of
 * raising the exception.
 */
#include "rt.h"

int main(void)
{
    printf("about to triple fault\n");
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } empty = {0, 0};
    __asm__ volatile("lidt %0\n\tud2" ::"m"(empty));
    printf("still alive after ud2 with an empty IDT?!\n");
    return 1;
}
