/* mkeltorito BOOT OUT: writes a minimal bootable CD image, laid out as ISO 9660 and El
 * Torito describe it, with BOOT (at most 32 KiB) as its no-emulation boot image: the
 * system area (blocks 0-15), a primary volume descriptor (16) with an empty root
 * directory, the boot record volume descriptor (17) pointing at the boot catalog, the
 * set terminator (18), the catalog (19: validation entry and a bootable initial entry),
 * the path tables (20, 21), the root directory (22) and the boot image (23...). A BIOS
 * loads the image at 0000:7C00 and enters it with DL = the CD's drive number. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK = 2048, ROOT = 22, BOOT_BLOCK = 23, MAX_BOOT = 32768 };

static uint8_t iso[(BOOT_BLOCK * BLOCK) + MAX_BOOT];

static void le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void be32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * (3 - i))); }
static void both32(uint8_t *p, uint32_t v) { le32(p, v); be32(p + 4, v); }
static void both16(uint8_t *p, uint16_t v) { p[0] = p[3] = (uint8_t)v; p[1] = p[2] = (uint8_t)(v >> 8); }
static void text(uint8_t *p, const char *s, size_t width) {
    memset(p, ' ', width);
    memcpy(p, s, strlen(s) < width ? strlen(s) : width);
}

/* A directory record of the root ("." is name 0, ".." name 1). */
static void root_record(uint8_t *r, uint8_t name) {
    static const uint8_t date[7] = {126, 12, 5, 0, 0, 0, 0};   /* 2026-12-05 00:00 UTC */
    r[0] = 34;
    both32(r + 2, ROOT);
    both32(r + 10, BLOCK);
    memcpy(r + 18, date, sizeof date);
    r[25] = 0x02;                                               /* a directory */
    both16(r + 28, 1);
    r[32] = 1;
    r[33] = name;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: mkeltorito BOOT OUT\n"); return 2; }
    FILE *in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    size_t boot = fread(iso + BOOT_BLOCK * BLOCK, 1, MAX_BOOT + 1, in);
    fclose(in);
    if (boot == 0 || boot > MAX_BOOT) { fprintf(stderr, "%s: 1 to %d bytes expected\n", argv[1], MAX_BOOT); return 1; }
    uint32_t total = BOOT_BLOCK + (uint32_t)((boot + BLOCK - 1) / BLOCK);

    uint8_t *pvd = iso + 16 * BLOCK;
    memcpy(pvd, "\001CD001\001", 7);
    text(pvd + 8, "", 32);
    text(pvd + 40, "HVTEST", 32);
    both32(pvd + 80, total);
    both16(pvd + 120, 1);                                       /* volume set size */
    both16(pvd + 124, 1);                                       /* volume sequence number */
    both16(pvd + 128, BLOCK);
    both32(pvd + 132, 10);                                      /* path table size */
    le32(pvd + 140, 20);
    be32(pvd + 148, 21);
    root_record(pvd + 156, 0);
    text(pvd + 190, "", 128 * 4 + 37 * 3);                      /* volume set ... bibliographic ids */
    for (int i = 0; i < 4; i++) memset(pvd + 813 + 17 * i, '0', 16);
    pvd[881] = 1;

    uint8_t *brvd = iso + 17 * BLOCK;
    memcpy(brvd, "\000CD001\001EL TORITO SPECIFICATION", 30);
    le32(brvd + 0x47, 19);
    memcpy(iso + 18 * BLOCK, "\377CD001\001", 7);

    uint8_t *catalog = iso + 19 * BLOCK;
    catalog[0] = 1;                                             /* header; platform 0 = 80x86 */
    memcpy(catalog + 4, "hvhost", 6);
    catalog[30] = 0x55;
    catalog[31] = 0xAA;
    uint16_t sum = 0;
    for (int i = 0; i < 32; i += 2) sum += (uint16_t)(catalog[i] | catalog[i + 1] << 8);
    uint16_t check = (uint16_t)-sum;                            /* the 16 words sum to 0 */
    catalog[28] = (uint8_t)check;
    catalog[29] = (uint8_t)(check >> 8);
    catalog[32] = 0x88;                                         /* bootable, no emulation, segment 0 = 07C0 */
    uint16_t sectors = (uint16_t)((boot + 511) / 512);          /* 512-byte virtual sectors */
    catalog[38] = (uint8_t)sectors;
    catalog[39] = (uint8_t)(sectors >> 8);
    le32(catalog + 40, BOOT_BLOCK);

    uint8_t *lpath = iso + 20 * BLOCK, *mpath = iso + 21 * BLOCK;
    lpath[0] = mpath[0] = 1;
    le32(lpath + 2, ROOT);
    be32(mpath + 2, ROOT);
    lpath[6] = 1;
    mpath[7] = 1;
    root_record(iso + ROOT * BLOCK, 0);
    root_record(iso + ROOT * BLOCK + 34, 1);

    FILE *out = fopen(argv[2], "wb");
    if (!out || fwrite(iso, BLOCK, total, out) != total || fclose(out) != 0) { perror(argv[2]); return 1; }
    return 0;
}
