#define _GNU_SOURCE
#include <fcntl.h>
#include "cpagecontent.h"

uint64_t hv_page_hash(const void *page) {
    const uint64_t *w = page;
    /* Four independent lanes keep the multiplier pipeline busy. */
    uint64_t a = 0x9E3779B97F4A7C15ull, b = 0xC2B2AE3D27D4EB4Full;
    uint64_t c = 0x165667B19E3779F9ull, d = 0x27D4EB2F165667C5ull;
    for (int i = 0; i < 512; i += 4) {
        a = (a ^ w[i]) * 0xFF51AFD7ED558CCDull; a ^= a >> 29;
        b = (b ^ w[i + 1]) * 0xC4CEB9FE1A85EC53ull; b ^= b >> 31;
        c = (c ^ w[i + 2]) * 0xFF51AFD7ED558CCDull; c ^= c >> 29;
        d = (d ^ w[i + 3]) * 0xC4CEB9FE1A85EC53ull; d ^= d >> 31;
    }
    uint64_t h = a ^ (b << 1 | b >> 63) ^ (c << 2 | c >> 62) ^ (d << 3 | d >> 61);
    h ^= h >> 33; h *= 0xFF51AFD7ED558CCDull; h ^= h >> 33;
    return h;
}

int hv_page_is_zero(const void *page) {
    const uint64_t *w = page;
    uint64_t acc = 0;
    for (int i = 0; i < 512; i++) acc |= w[i];
    return acc == 0;
}

int hv_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}
