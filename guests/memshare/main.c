/*
 * memshare: a guest for content-based page sharing and its copy-on-write.
 *
 * In ring 3 (native speed everywhere) it fills the RAM above 16 MiB (`mib=N`, default
 * 44, which fits a 64 MiB VM) once: the first `unique=U` pages
 * (default 256) hold words derived from `id=I` and the page index, so they differ per VM
 * and per page; every other page holds one of 16 patterns (page index mod 16), the same
 * in every VM that runs this guest, and prints `memshare: filled ...`. Then it keeps
 * proving the memory: each pass writes a pass-and-id stamp over one pattern page (a
 * different one each pass, so over time it writes pages the VMkernel has shared by
 * then), checks that it reads its own stamp back, checks every other page against what
 * was filled, and puts the pattern back. Whenever the CMOS RTC second changes it prints
 * `memshare: pass P verified`; a page that holds anything else prints
 * `memshare: MISMATCH page <n> word <k> holds <v>, expected <e>` and the guest exits 1.
 * `seconds=S`: exit 0 after S RTC second changes (0: run until powered off).
 */
#include "rt.h"

#define BASE 0x1000000ull /* 16 MiB: above the guest image and its stacks */
#define WORDS 512

static uint64_t pages, unique, id, seconds;

static uint64_t expected(uint64_t page, uint64_t word)
{
    if (page < unique)
        return (id << 48) ^ (page << 16) ^ word ^ 0x5bd1e995ull;
    return 0x0101010101010101ull * ((page & 15) + 1) + word;
}

static volatile uint64_t *page_at(uint64_t page)
{
    return (volatile uint64_t *)(BASE + page * 4096);
}

static void fill(uint64_t page)
{
    volatile uint64_t *w = page_at(page);
    for (uint64_t k = 0; k < WORDS; k++)
        w[k] = expected(page, k);
}

static int check(uint64_t page, uint64_t want_override, int overridden)
{
    volatile uint64_t *w = page_at(page);
    for (uint64_t k = 0; k < WORDS; k++) {
        uint64_t want = overridden ? want_override + k : expected(page, k);
        if (w[k] != want) {
            printf("memshare: MISMATCH page %lu word %lu holds %lx, expected %lx\n", page, k, w[k], want);
            return 1;
        }
    }
    return 0;
}

static uint64_t prove_user(void)
{
    for (uint64_t p = 0; p < pages; p++)
        fill(p);
    printf("memshare: filled %lu pages, %lu unique, id %lu\n", pages, unique, id);
    uint64_t edges = 0;
    uint8_t last = inb(0x71);
    uint64_t patterned = pages - unique;
    for (uint64_t pass = 1;; pass++) {
        uint64_t target = unique + pass % patterned;
        uint64_t stamp = (id << 48) ^ (pass << 12) ^ 0xc0ffee0000000000ull;
        volatile uint64_t *t = page_at(target);
        for (uint64_t k = 0; k < WORDS; k++)
            t[k] = stamp + k;
        for (uint64_t p = 0; p < pages; p++)
            if (check(p, stamp, p == target))
                return 1;
        fill(target);
        uint8_t now = inb(0x71);
        if (now != last) {
            last = now;
            printf("memshare: pass %lu verified\n", pass);
            if (seconds && ++edges >= seconds)
                return 0;
        }
    }
}

int main(void)
{
    uint64_t mib = cmdline_u64("mib", 44);
    unique = cmdline_u64("unique", 256);
    id = cmdline_u64("id", 0);
    seconds = cmdline_u64("seconds", 0);
    if (mib == 0 || BASE + (mib << 20) > mem_ram_bytes()) {
        printf("memshare: %lu MiB at 16 MiB does not fit %lu bytes of RAM\n", mib, mem_ram_bytes());
        return 2;
    }
    pages = mib << 8;
    if (unique >= pages) {
        printf("memshare: unique=%lu leaves no pattern pages of %lu\n", unique, pages);
        return 2;
    }
    while (cmos_read(0x0A) & 0x80)
        pause();
    outb(0x70, 0x00);
    return (int)run_user(prove_user, user_stack_top);
}
