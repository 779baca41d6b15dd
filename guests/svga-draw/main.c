/*
 * svga-draw: a VMware SVGA II (15ad:0405) driver in the order Linux vmwgfx and the
 * X.org vmware driver use: negotiate SVGA_ID_2 (falling back to 1 and 0), read the
 * capabilities, VRAM and FIFO sizes, set 800x600x32 (not 640x480: QEMU keeps its 640x480 "not initialized"
 * placeholder surface when the mode has the same size), set up the FIFO, enable, then draw
 * (see README.md for the picture):
 *   - the background by RECT_FILL when the device has SVGA_CAP_RECT_FILL, else by CPU
 *     writes to VRAM + UPDATE;
 *   - a red rectangle by CPU writes + UPDATE, a green one by RECT_FILL (or CPU);
 *   - "SVGA DRAW OK" in its own 5x7 glyphs (font.h), scaled 4x, by CPU writes + UPDATE;
 *   - RECT_COPY of part of the red rectangle and the text (SVGA_CAP_RECT_COPY);
 *   - a 16x16 alpha cursor (DEFINE_ALPHA_CURSOR, or a 1-bpp DEFINE_CURSOR without
 *     SVGA_CAP_ALPHA_CURSOR) placed with the cursor registers;
 *   - a FENCE (with SVGA_FIFO_CAP_FENCE), waited for in SVGA_FIFO_FENCE, then SYNC/BUSY.
 * Command line: keydraw=1 repaints a square at (8,8) on each key press (bench/console.py);
 * bench=S times RECT_FILL and CPU-draw + UPDATE round trips for S
 * seconds each and exits (bench/svga.py); accel=0 fills and copies with the CPU even when the device offers
 * RECT_FILL and RECT_COPY.
 * Then "svga-draw: ready" and an idle loop woken by the PIT at 100 Hz and the input
 * IRQs that echoes keys and pointer packets (input_echo.c, "input: ready").
 *
 * The drawing runs in ring 3 (native speed on the PVM host); ring 3 has IOPL 3 for the
 * SVGA index/value ports.
 */
#include "rt.h"
#include "font.h"
#include "../console-input/input_echo.h"

#define SVGA_INDEX 0
#define SVGA_VALUE 1

#define REG_ID 0
#define REG_ENABLE 1
#define REG_WIDTH 2
#define REG_HEIGHT 3
#define REG_BPP 7
#define REG_BYTES_PER_LINE 12
#define REG_FB_OFFSET 14
#define REG_VRAM_SIZE 15
#define REG_CAPABILITIES 17
#define REG_MEM_SIZE 19
#define REG_CONFIG_DONE 20
#define REG_SYNC 21
#define REG_BUSY 22
#define REG_CURSOR_ID 24
#define REG_CURSOR_X 25
#define REG_CURSOR_Y 26
#define REG_CURSOR_ON 27

#define ID(n) (0x90000000u | (n))
#define CAP_RECT_FILL 0x1
#define CAP_RECT_COPY 0x2
#define CAP_CURSOR 0x20
#define CAP_ALPHA_CURSOR 0x200
#define CAP_EXTENDED_FIFO 0x8000

#define FIFO_MIN 0
#define FIFO_MAX 1
#define FIFO_NEXT_CMD 2
#define FIFO_STOP 3
#define FIFO_CAPABILITIES 4
#define FIFO_FENCE 6
#define FIFO_CAP_FENCE 0x1

#define CMD_UPDATE 1
#define CMD_RECT_FILL 2
#define CMD_RECT_COPY 3
#define CMD_DEFINE_CURSOR 19
#define CMD_DEFINE_ALPHA_CURSOR 22
#define CMD_FENCE 30

#define WIDTH 800
#define HEIGHT 600
#define BG 0x00203048u
#define RED 0x00CC2020u
#define GREEN 0x0020B040u
#define TEXT 0x00FFE060u

static uint16_t io;
static volatile uint32_t *vram;
static volatile uint32_t *fifo;
static uint32_t fifo_bytes, caps, pitch_px;

static uint32_t reg_read(uint32_t r) { outl(io + SVGA_INDEX, r); return inl(io + SVGA_VALUE); }
static void reg_write(uint32_t r, uint32_t v) { outl(io + SVGA_INDEX, r); outl(io + SVGA_VALUE, v); }

static void sync_fifo(void)
{
    reg_write(REG_SYNC, 1);
    while (reg_read(REG_BUSY)) pause();
}

/* Appends one command; when the ring has no room, lets the device drain it first. */
static void fifo_cmd(const uint32_t *words, unsigned n)
{
    uint32_t min = fifo[FIFO_MIN], max = fifo[FIFO_MAX];
    for (unsigned i = 0; i < n; i++) {
        uint32_t next = fifo[FIFO_NEXT_CMD];
        uint32_t after = next + 4 == max ? min : next + 4;
        while (after == fifo[FIFO_STOP]) sync_fifo();
        fifo[next / 4] = words[i];
        barrier();
        fifo[FIFO_NEXT_CMD] = after;
    }
}

static void update(uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    uint32_t c[] = {CMD_UPDATE, x, y, w, h};
    fifo_cmd(c, 5);
}

/* CPU drawing waits for queued accelerated commands first: they may cover the same
 * pixels and the device runs them whenever it likes until SYNC returns. */
static void cpu_fill(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t color)
{
    sync_fifo();
    for (uint32_t j = y; j < y + h; j++)
        for (uint32_t i = x; i < x + w; i++) vram[j * pitch_px + i] = color;
    update(x, y, w, h);
}

static void fill(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t color)
{
    if (caps & CAP_RECT_FILL) {
        uint32_t c[] = {CMD_RECT_FILL, color, x, y, w, h};
        fifo_cmd(c, 6);
    } else {
        cpu_fill(x, y, w, h, color);
    }
}

/* `s` at (x, y), each glyph pixel a scale x scale square, 6 columns per character. */
static void text(uint32_t x, uint32_t y, const char *s, uint32_t scale, uint32_t color)
{
    uint32_t x0 = x;
    sync_fifo();
    for (; *s; s++, x += 6 * scale) {
        const uint8_t *g = glyphs[(unsigned char)*s & 0x7F];
        for (uint32_t row = 0; row < 7; row++)
            for (uint32_t col = 0; col < 5; col++) {
                if (!(g[row] & (0x10 >> col))) continue;
                for (uint32_t dy = 0; dy < scale; dy++)
                    for (uint32_t dx = 0; dx < scale; dx++)
                        vram[(y + row * scale + dy) * pitch_px + x + col * scale + dx] = color;
            }
    }
    update(x0, y, x - x0, 7 * scale);
}

/* The cursor: a right triangle with the hotspot at its tip, black edges, white inside. */
static uint32_t cursor_pixel(uint32_t x, uint32_t y)
{
    if (x > y) return 0;
    return (x == 0 || x == y || y == 15) ? 0xFF000000u : 0xFFFFFFFFu;
}

static void define_cursor(void)
{
    if (caps & CAP_ALPHA_CURSOR) {
        uint32_t head[] = {CMD_DEFINE_ALPHA_CURSOR, 0, 0, 0, 16, 16};
        fifo_cmd(head, 6);
        for (uint32_t y = 0; y < 16; y++)
            for (uint32_t x = 0; x < 16; x++) {
                uint32_t p = cursor_pixel(x, y);
                fifo_cmd(&p, 1);
            }
        return;
    }
    /* AND mask 1 bpp (1 = transparent), XOR image 32 bpp; rows padded to 32 bits,
     * bits most significant first within each byte. */
    uint32_t head[] = {CMD_DEFINE_CURSOR, 0, 0, 0, 16, 16, 1, 32};
    fifo_cmd(head, 8);
    for (uint32_t y = 0; y < 16; y++) {
        uint32_t bits = 0;
        for (uint32_t x = 0; x < 16; x++)
            if (!cursor_pixel(x, y)) bits |= 1u << ((x / 8) * 8 + 7 - x % 8);
        bits |= 0xFFFF0000u;
        fifo_cmd(&bits, 1);
    }
    for (uint32_t y = 0; y < 16; y++)
        for (uint32_t x = 0; x < 16; x++) {
            uint32_t p = cursor_pixel(x, y) & 0xFFFFFF;
            fifo_cmd(&p, 1);
        }
}

static volatile uint64_t ticks;
static void on_tick(struct int_frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(0);
}

/* bench=S: for S seconds each (PIT ticks at 100 Hz), a 64x64 RECT_FILL + SYNC/BUSY,
 * then 64x64 of CPU writes + UPDATE + SYNC/BUSY, each op at a moving position. */
static uint64_t bench_seconds;
static uint64_t bench(void)
{
    for (int kind = 0; kind < 2; kind++) {
        uint64_t ops = 0, start = ticks, end = start + bench_seconds * 100;
        while (ticks < end) {
            uint32_t x = (uint32_t)(ops * 64) % (WIDTH - 64), y = (uint32_t)(ops / 11 * 64) % (HEIGHT - 64);
            uint32_t color = (uint32_t)ops * 0x010203u;
            if (kind == 0) {
                uint32_t c[] = {CMD_RECT_FILL, color, x, y, 64, 64};
                fifo_cmd(c, 6);
            } else {
                for (uint32_t j = y; j < y + 64; j++)
                    for (uint32_t i = x; i < x + 64; i++) vram[j * pitch_px + i] = color;
                update(x, y, 64, 64);
            }
            sync_fifo();
            ops++;
        }
        printf("svga-bench: %s %llu ops %llu ticks\n", kind == 0 ? "rectfill" : "update",
               (unsigned long long)ops, (unsigned long long)(ticks - start));
    }
    return 0;
}

static uint64_t draw(void)
{
    fill(0, 0, WIDTH, HEIGHT, BG);
    cpu_fill(40, 40, 200, 120, RED);
    fill(280, 40, 160, 120, GREEN);
    text(40, 200, "SVGA DRAW OK", 4, TEXT);
    if (caps & CAP_RECT_COPY) {
        uint32_t c[] = {CMD_RECT_COPY, 40, 200, 360, 320, 240, 28};
        fifo_cmd(c, 7);
    } else {
        sync_fifo();
        for (uint32_t row = 0; row < 28; row++)
            for (uint32_t x = 0; x < 240; x++) vram[(320 + row) * pitch_px + 360 + x] = vram[(200 + row) * pitch_px + 40 + x];
        update(360, 320, 240, 28);
    }
    if (caps & CAP_CURSOR) {
        define_cursor();
        sync_fifo();
        reg_write(REG_CURSOR_ID, 0);
        reg_write(REG_CURSOR_X, 320);
        reg_write(REG_CURSOR_Y, 240);
        reg_write(REG_CURSOR_ON, 1);
    }
    if ((caps & CAP_EXTENDED_FIFO) && (fifo[FIFO_CAPABILITIES] & FIFO_CAP_FENCE)) {
        uint32_t c[] = {CMD_FENCE, 0x5EED};
        fifo_cmd(c, 2);
        sync_fifo();
        while (fifo[FIFO_FENCE] != 0x5EED) sync_fifo();
        printf("svga-draw: fence 0x%x passed\n", fifo[FIFO_FENCE]);
    }
    sync_fifo();
    return 0;
}


/* Called after every timer tick or input IRQ once the picture is drawn: echoes keys
 * and pointer packets on serial (input_echo.c; `vmmouse=0` leaves the absolute
 * pointer off). */
static uint64_t keydraw;
static unsigned keys_drawn;
static void idle_poll(void)
{
    (void)input_echo_poll();
    /* keydraw=1: each key press repaints a 16x16 square at (8,8), alternating yellow and
     * cyan (bench/console.py times key to pixel over VNC). */
    if (keydraw && keys_drawn != input_echo_presses) {
        keys_drawn = input_echo_presses;
        cpu_fill(8, 8, 16, 16, keys_drawn & 1 ? 0xFFFF00 : 0x00FFFF);
    }
}

int main(void)
{
    struct pci_dev d;
    if (!pci_find(0x15AD, 0x0405, &d)) fail(3, "svga-draw: no VMware SVGA II (15ad:0405)\n");
    struct pci_bar b0, b1, b2;
    pci_bar(&d, 0, &b0);
    pci_bar(&d, 1, &b1);
    pci_bar(&d, 2, &b2);
    if (b0.type != PCI_BAR_IO || b1.type == PCI_BAR_NONE || b2.type == PCI_BAR_NONE)
        fail(4, "svga-draw: unexpected BARs\n");
    pci_enable(&d, PCI_CMD_IO | PCI_CMD_MEM);
    io = (uint16_t)b0.addr;
    vram = (volatile uint32_t *)b1.addr;
    fifo = (volatile uint32_t *)b2.addr;

    uint32_t id = 0;
    for (int n = 2; n >= 0; n--) {
        reg_write(REG_ID, ID(n));
        if (reg_read(REG_ID) == ID(n)) { id = ID(n); break; }
    }
    if (!id) fail(5, "svga-draw: no SVGA ID accepted\n");
    caps = id >= ID(1) ? reg_read(REG_CAPABILITIES) : 0;
    /* accel=0: fills and copies by the CPU even when the device offers RECT_FILL and
     * RECT_COPY. QEMU 7.2 advertises both but rejects RECT_FILL as an unknown command
     * (then parses its arguments as commands: stripes), and runs
     * RECT_COPY with the pitch of the surface it showed before the mode set until
     * its display refreshes (never with -display none). */
    if (!cmdline_u64("accel", 1)) caps &= ~(CAP_RECT_FILL | CAP_RECT_COPY);
    uint32_t vram_size = reg_read(REG_VRAM_SIZE);
    fifo_bytes = reg_read(REG_MEM_SIZE);
    if (fifo_bytes > 0x10000) fifo_bytes = 0x10000;
    printf("svga-draw: id 0x%x caps 0x%x vram %u KiB fifo %u KiB\n", id, caps, vram_size >> 10, fifo_bytes >> 10);

    reg_write(REG_WIDTH, WIDTH);
    reg_write(REG_HEIGHT, HEIGHT);
    reg_write(REG_BPP, 32);
    uint32_t pitch = reg_read(REG_BYTES_PER_LINE);
    uint32_t offset = reg_read(REG_FB_OFFSET);
    pitch_px = pitch / 4;
    vram = (volatile uint32_t *)(b1.addr + offset);
    printf("svga-draw: mode %ux%ux32 pitch %u offset %u\n", reg_read(REG_WIDTH), reg_read(REG_HEIGHT), pitch, offset);

    /* FIFO: registers below 4 KiB, commands above. */
    fifo[FIFO_MIN] = 4096;
    fifo[FIFO_MAX] = fifo_bytes;
    fifo[FIFO_NEXT_CMD] = 4096;
    fifo[FIFO_STOP] = 4096;
    reg_write(REG_ENABLE, 1);
    reg_write(REG_CONFIG_DONE, 1);
    printf("svga-draw: enable %u config_done %u\n", reg_read(REG_ENABLE), reg_read(REG_CONFIG_DONE));

    run_user(draw, user_stack_top);

    pic_init();
    set_int_handler(PIC_VECTOR(0), on_tick);
    pit_init_periodic(100);
    pic_unmask(0);
    bench_seconds = cmdline_u64("bench", 0);
    if (bench_seconds) {
        run_user(bench, user_stack_top);
        return 0;
    }
    keydraw = cmdline_u64("keydraw", 0);
    input_echo_init(cmdline_u64("vmmouse", 1) != 0);
    printf("svga-draw: ready\n");
    for (;;) {
        wait_irq();
        idle_poll();
    }
}
