#ifndef CPAGECONTENT_H
#define CPAGECONTENT_H
#include <stdint.h>

/* Content tests of one 4 KiB page for the page-sharing scanner, in C so that they run
   at memory speed in debug builds as well. `page` must be 8-byte aligned. */

/* A 64-bit hash of the page's 4096 bytes (multiply-xorshift over 64-bit words). */
uint64_t hv_page_hash(const void *page);

/* 1 when all 4096 bytes are zero. */
int hv_page_is_zero(const void *page);

/* fallocate(PUNCH_HOLE | KEEP_SIZE): frees a range of a memfd (glibc declares
   fallocate only under _GNU_SOURCE, which Swift's Glibc module does not set).
   Returns 0 or -1 with errno. */
int hv_punch_hole(int fd, int64_t offset, int64_t length);

#endif
