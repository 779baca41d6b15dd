/* hello: serial output from kernel mode and ring 3, memory size, command line. */
#include "rt.h"

static uint64_t user_main(void)
{
    if (cpl() != 3)
        return 100 + cpl();
    printf("hello from ring 3\n");
    return 42;
}

int main(void)
{
    printf("Hello from the hvhost test guest\n");

    uint64_t r = run_user(user_main, user_stack_top);
    if (r != 42)
        fail(2, "ring 3 returned %lu, expected 42\n", r);
    printf("back in ring 0 (cpl %u), ring 3 returned %lu", cpl(), r);
    printf("\n");
    if (user_pio_emulated || user_int80_via_ud)
        printf("note: host quirks: %lu ring-3 IN/OUT emulated after #GP (IOPL ignored), "
               "%lu ring-3 int $0x80 arrived as #UD\n",
               user_pio_emulated, user_int80_via_ud);

    if (!start_info)
        fail(3, "no valid hvm_start_info\n");
    if (start_info->version >= 1)
        for (uint32_t i = 0; i < start_info->memmap_entries; i++) {
            const struct hvm_memmap_entry *e =
                (const struct hvm_memmap_entry *)start_info->memmap_paddr + i;
            printf("memmap: 0x%010lx-0x%010lx type %u\n", e->addr, e->addr + e->size - 1, e->type);
        }
    uint64_t mem = mem_ram_bytes();
    if (!mem)
        fail(4, "no RAM in the start-info memmap\n");
    /* rounded to the nearest MiB: firmware holes (640K-1M, ...) are not RAM */
    printf("memory: %lu MiB\n", (mem + (1u << 19)) >> 20);

    const char *cl = cmdline();
    if (cl[0])
        printf("cmdline: %s\n", cl);
    return 0;
}
