/*
 * dirty: a guest that dirties memory as fast as it can, for live-migration tests.
 *
 * A ring-3 loop (native speed everywhere) makes passes over a working set of
 * `mib=N` MiB (default 32) starting at 16 MiB: each pass writes the pass number into
 * the first word of every 4 KiB page after checking that the page still holds the
 * previous pass's number (the second word holds the page's index, so that no two
 * pages are alike and none migrates as a duplicate). A migration that loses or reorders a page therefore shows
 * as `dirty: MISMATCH page <n> holds <v>, expected <p>`. Whenever the CMOS RTC second
 * changes it prints `dirty: pass <p> pages <total pages written>` (the progress a test
 * watches across the move).
 *
 * Optional `spin=K`: K pause instructions after every page, to dirty more slowly.
 * `seconds=S`: stop after S RTC second changes and exit 0 (0: run forever).
 */
#include "rt.h"

#define BASE 0x1000000ull /* 16 MiB: above the guest image and its stacks */

static uint64_t pages, spin, seconds;

static uint64_t dirty_user(void)
{
    volatile uint64_t *base = (volatile uint64_t *)BASE;
    uint64_t written = 0, edges = 0;
    uint8_t last = inb(0x71);
    for (uint64_t pass = 1;; pass++) {
        for (uint64_t i = 0; i < pages; i++) {
            volatile uint64_t *w = base + i * 512;
            if (*w != pass - 1) {
                printf("dirty: MISMATCH page %lu holds %lu, expected %lu\n", i, *w, pass - 1);
                return 1;
            }
            *w = pass;
            written++;
            for (uint64_t k = 0; k < spin; k++)
                pause();
            if ((i & 255) == 0) {
                uint8_t now = inb(0x71);
                if (now != last) {
                    last = now;
                    printf("dirty: pass %lu pages %lu\n", pass, written);
                    if (seconds && ++edges >= seconds)
                        return 0;
                }
            }
        }
    }
}

int main(void)
{
    uint64_t mib = cmdline_u64("mib", 32);
    spin = cmdline_u64("spin", 0);
    seconds = cmdline_u64("seconds", 0);
    if (BASE + (mib << 20) > mem_ram_bytes()) {
        printf("dirty: %lu MiB at 16 MiB does not fit %lu bytes of RAM\n", mib, mem_ram_bytes());
        return 2;
    }
    pages = mib << 8;
    for (uint64_t i = 0; i < pages; i++) {
        *(volatile uint64_t *)(BASE + i * 4096) = 0;
        *(volatile uint64_t *)(BASE + i * 4096 + 8) = i;
    }
    printf("dirty: %lu MiB working set, spin=%lu\n", mib, spin);
    while (cmos_read(0x0A) & 0x80)
        pause();
    outb(0x70, 0x00);
    return (int)run_user(dirty_user, user_stack_top);
}
