/* A probe device for the ABI 1.1 device extensions: "hv.legacy-io/1", "hv.rom/1",
 * "hv.display/1" and "hv.input/1". An ordinary (locked) model; one malloc'd state per
 * instance. Config key "features" picks what create() sets up (default
 * "legacy,rom,display,input"; "romfile" loads the ROM from config key "romFile").
 * Registers (BAR0, 4 KiB; results are int64):
 *   0x000+8i R  create-time results of the claims listed in `claims` below
 *   0x080 R  ROM set_bytes before pci_set_identity   0x088 R  the ROM call
 *   0x090 R  a second ROM call
 *   0x0C0 R  display attach   0x0C8 R  input attach   0x0D0 R  a second input attach
 *   0x100..0x118 R  claim, ROM, display attach, input attach tried again in realize()
 *   0x200 R  last legacy write: address, 0x208 size, 0x210 value, 0x218 region tag
 *   0x220 R  legacy handler calls
 *   0x300 W  set_mode XRGB8888, width = v & 0xffff, height = v >> 16, pitch width * 4,
 *           over a buffer whose pixel i is 0xff000000 | i
 *   0x308 W  the same with pitch one byte short      0x310 W  the same with 24 bpp
 *   0x318 W  set_mode(NULL)     0x320 W  update(x, y, w, h: 16 bits each, x lowest)
 *   0x328 W  cursor_define 2x3, hotspot (1, 2); v = 1: hotspot (2, 2)
 *   0x330 W  cursor_move(low 32 bits, high 32 bits)   0x338 W  cursor_show(v)
 *   0x340 W  set_palette(v, 2, {0x112233, 0xff445566})  0x348 W  framebuffer pixel 0 = v
 *   0x3F8 R  result of the last display call
 *   0x400 R  last scancode, 0x408 pressed, 0x410 pointer kind, 0x418 x, 0x420 y,
 *   0x428 wheel, 0x430 buttons, 0x438 key events, 0x440 pointer events,
 *   0x448 W  take events (1, the default) or refuse them with HV_EAGAIN (0)
 *   0x450 R  struct_size of the last pointer event */
#include <hvplugin.h>
#include <stdlib.h>
#include <string.h>

#define FB_SIDE 256

struct hv_device {
    const hv_host_services *s;
    hv_host *h;
    const hv_legacy_io_ext *legacy;
    const hv_rom_ext *rom;
    const hv_display_ext *display;
    const hv_input_ext *input;
    int64_t results[0x100 / 8 * 5];          /* 0x000..0x27f as int64 slots */
    uint32_t fb[FB_SIDE * FB_SIDE];
    int64_t display_rc;
    uint64_t in[11];                         /* 0x400..0x450 */
    int take_input;
};

enum { R_ROM = 0x80 / 8, R_ATTACH = 0xC0 / 8, R_LATE = 0x100 / 8, R_LEGACY = 0x200 / 8 };

static uint64_t legacy_read(hv_device *d, void *opaque, uint64_t addr, uint32_t size) {
    uintptr_t tag = (uintptr_t)opaque;
    (void)size;
    d->results[R_LEGACY + 4]++;
    if (tag == 2) return 0xC0DE5EED;          /* the wide port's fixed answer */
    return (uint64_t)tag << 56 | addr;
}

static void legacy_write(hv_device *d, void *opaque, uint64_t addr, uint32_t size, uint64_t value) {
    d->results[R_LEGACY + 0] = (int64_t)addr;
    d->results[R_LEGACY + 1] = size;
    d->results[R_LEGACY + 2] = (int64_t)value;
    d->results[R_LEGACY + 3] = (int64_t)(uintptr_t)opaque;
    d->results[R_LEGACY + 4]++;
}

static const struct { uint32_t space; uint64_t base, size; uintptr_t tag; int handlers; const char *name; } claims[] = {
    { HV_LEGACY_PORT, 0x3C0, 0x20, 1, 1, "vga" },
    { HV_LEGACY_PORT, 0x0E00, 4, 2, 1, "wide-port" },       /* a 32-bit IN covers 4 ports */
    { HV_LEGACY_MEMORY, 0xA0000, 0x20000, 3, 1, "vga-window" },
    { HV_LEGACY_PORT, 0x3D0, 4, 4, 1, "overlaps-vga" },          /* HV_EBUSY */
    { HV_LEGACY_PORT, 0x60, 1, 4, 1, "keyboard" },              /* HV_EBUSY: the i8042 */
    { HV_LEGACY_PORT, 0xC000, 4, 4, 1, "pci-window" },          /* HV_EINVAL */
    { HV_LEGACY_PORT, 0xFFFF, 2, 4, 1, "past-0xffff" },         /* HV_EINVAL */
    { HV_LEGACY_MEMORY, 0x9F000, 0x1000, 4, 1, "below-hole" },  /* HV_EINVAL */
    { HV_LEGACY_MEMORY, 0xC0800, 0x1000, 4, 1, "unaligned" },   /* HV_EINVAL */
    { HV_LEGACY_MEMORY, 0xB0000, 0x1000, 4, 1, "inside-vga" },  /* HV_EBUSY */
    { HV_LEGACY_PORT, 0x100, 4, 4, 0, "no-handlers" },          /* HV_EINVAL */
    { 7, 0x100, 4, 4, 1, "bad-space" },                         /* HV_EINVAL */
};
#define MAIN_CLAIMS 3

static int claim(hv_device *d, size_t i) {
    hv_legacy_region r = { sizeof r, claims[i].space, claims[i].base, claims[i].size,
                           claims[i].handlers ? legacy_read : NULL, claims[i].handlers ? legacy_write : NULL,
                           (void *)claims[i].tag, claims[i].name };
    return d->legacy->claim(d->h, &r);
}

static void show(hv_device *d, uint64_t v, uint32_t pitch_less, uint32_t bpp) {
    uint32_t w = (uint32_t)(v & 0xffff), h = (uint32_t)(v >> 16 & 0xffff);
    hv_display_mode m = { sizeof m, w, h, bpp, w * 4 - pitch_less, HV_PIXEL_XRGB8888, d->fb };
    d->display_rc = w <= FB_SIDE && h <= FB_SIDE ? d->display->set_mode(d->h, &m) : HV_ERANGE;
}

static uint64_t rd(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    if (off < 0x280) return (uint64_t)d->results[off / 8];
    if (off == 0x3F8) return (uint64_t)d->display_rc;
    if (off >= 0x400 && off <= 0x450) return d->in[(off - 0x400) / 8];
    return 0;
}

static void wr(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    static const uint32_t cursor[6] = { 0xff000001, 0xff000002, 0xff000003, 0xff000004, 0xff000005, 0xff000006 };
    static const uint32_t colors[2] = { 0x112233, 0xff445566 };
    (void)bar; (void)size;
    switch (off) {
    case 0x300: show(d, v, 0, 32); break;
    case 0x308: show(d, v, 1, 32); break;
    case 0x310: show(d, v, 0, 24); break;
    case 0x318: d->display_rc = d->display->set_mode(d->h, NULL); break;
    case 0x320:
        d->display_rc = d->display->update(d->h, (uint32_t)(v & 0xffff), (uint32_t)(v >> 16 & 0xffff),
                                           (uint32_t)(v >> 32 & 0xffff), (uint32_t)(v >> 48));
        break;
    case 0x328: {
        hv_display_cursor c = { sizeof c, 2, 3, v == 1 ? 2 : 1, 2, 0, cursor };
        d->display_rc = d->display->cursor_define(d->h, &c);
        break;
    }
    case 0x330: d->display_rc = d->display->cursor_move(d->h, (int32_t)(uint32_t)v, (int32_t)(uint32_t)(v >> 32)); break;
    case 0x338: d->display_rc = d->display->cursor_show(d->h, (int)v); break;
    case 0x340: d->display_rc = d->display->set_palette(d->h, (uint32_t)v, 2, colors); break;
    case 0x348: d->fb[0] = (uint32_t)v; break;
    case 0x448: d->take_input = (int)v; break;
    default: break;
    }
}

static int on_key(hv_device *d, uint32_t scancode, int pressed) {
    if (!d->take_input) return HV_EAGAIN;
    d->in[0] = scancode;
    d->in[1] = (uint64_t)pressed;
    d->in[7]++;
    return HV_OK;
}

static int on_pointer(hv_device *d, const hv_pointer_event *e) {
    if (!d->take_input) return HV_EAGAIN;
    d->in[2] = e->kind;
    d->in[3] = (uint64_t)(int64_t)e->x;
    d->in[4] = (uint64_t)(int64_t)e->y;
    d->in[5] = (uint64_t)(int64_t)e->wheel;
    d->in[6] = e->buttons;
    d->in[8]++;
    d->in[10] = e->struct_size;
    return HV_OK;
}

static const hv_input_client input_client = { sizeof input_client, 0, on_key, on_pointer };

static int has(const char *features, const char *name) {
    size_t n = strlen(name);
    for (const char *p = features; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == features || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    }
    return 0;
}

static int set_rom_bytes(hv_device *d) {
    static uint8_t image[3000];
    for (size_t i = 0; i < sizeof image; i++) image[i] = (uint8_t)(i * 7 + 1);
    image[0] = 0x55;
    image[1] = 0xAA;
    return d->rom->set_bytes(d->h, image, sizeof image);
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->s = s;
    d->h = h;
    d->take_input = 1;
    d->legacy = s->get_extension(h, HV_EXT_LEGACY_IO);
    d->rom = s->get_extension(h, HV_EXT_ROM);
    d->display = s->get_extension(h, HV_EXT_DISPLAY);
    d->input = s->get_extension(h, HV_EXT_INPUT);
    const char *features = s->config_get(h, "features");
    if (!features) features = "legacy,rom,display,input";
    for (uint32_t i = 0; i < FB_SIDE * FB_SIDE; i++) d->fb[i] = 0xff000000u | i;

    int rc = HV_OK;
    if (!d->legacy || !d->rom || !d->display || !d->input) rc = HV_ENOTSUP;
    if (rc == HV_OK && has(features, "rom")) d->results[R_ROM] = set_rom_bytes(d);
    hv_pci_identity id = { sizeof id, 0x1234, 0x11e2, 0, 0, 0xff0000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 4096, rd, wr };
    if (rc == HV_OK) rc = s->pci_set_identity(h, &id);
    if (rc == HV_OK) rc = s->pci_add_bar(h, &bar);
    if (rc == HV_OK && has(features, "legacy")) {
        for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
            d->results[i] = claim(d, i);
            if (i < MAIN_CLAIMS && d->results[i] != HV_OK) rc = (int)d->results[i];
        }
    }
    if (rc == HV_OK && has(features, "rom")) {
        rc = set_rom_bytes(d);
        d->results[R_ROM + 1] = rc;
        d->results[R_ROM + 2] = set_rom_bytes(d);
    }
    if (rc == HV_OK && has(features, "romfile")) {
        const char *file = s->config_get(h, "romFile");
        rc = d->rom->load_file(h, file ? file : "");
        d->results[R_ROM + 1] = rc;
    }
    if (rc == HV_OK && has(features, "display")) rc = (int)(d->results[R_ATTACH] = d->display->attach(h));
    if (rc == HV_OK && has(features, "input")) {
        rc = (int)(d->results[R_ATTACH + 1] = d->input->attach(h, &input_client));
        d->results[R_ATTACH + 2] = d->input->attach(h, &input_client);
    }
    if (rc != HV_OK) {
        free(d);
        return rc;
    }
    *out = d;
    return HV_OK;
}

static int realize(hv_device *d) {
    d->results[R_LATE] = claim(d, 0);
    d->results[R_LATE + 1] = set_rom_bytes(d);
    d->results[R_LATE + 2] = d->display->attach(d->h);
    d->results[R_LATE + 3] = d->input->attach(d->h, &input_client);
    return HV_OK;
}

static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .realize = realize, .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "devext",
    .description = "ABI 1.1 device-extension probe", .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof factory, HV_ABI_VERSION, 1, 0, models };

static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }

static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION, .id = "org.test.devext",
    .name = "Device extension probe", .version = "1.0", .get_factory = get_factory, .factory_ids = ids,
};

const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
