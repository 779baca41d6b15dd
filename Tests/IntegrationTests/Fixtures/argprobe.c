/* argprobe: a device model whose commands take and return every HV_ARG_* type, so the
 * console's libffi calls can be checked end to end (PluginKitTests). `reg` shows the
 * BAR register the guest may write and how many typed calls arrived. */
#include "hvplugin.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hv_device { const hv_host_services *hs; hv_host *host; uint64_t calls; uint32_t reg; };

static uint64_t bar_read(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)off; (void)size; return d->reg;
}
static void bar_write(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)off; (void)size; d->reg = (uint32_t)v;
}


static int64_t c_ints(hv_device *d, int8_t a, int16_t b, int32_t c, int64_t e) {
    d->calls++; return (int64_t)a + b + c + e;
}
static uint64_t c_uints(hv_device *d, uint8_t a, uint16_t b, uint32_t c, uint64_t e) {
    d->calls++; return (uint64_t)a + b + c + e;
}
static double c_mix(hv_device *d, double x, int flag, const char *s, char *buf, size_t len) {
    d->calls++;
    snprintf(buf, len, "s=%s flag=%d len=%zu", s, flag, len);
    return x * 2;
}
static int8_t c_i8(hv_device *d, int8_t v) { (void)d; return (int8_t)(v - 1); }
static uint8_t c_u8(hv_device *d, uint8_t v) { (void)d; return (uint8_t)(v + 1); }
static int16_t c_i16(hv_device *d, int16_t v) { (void)d; return (int16_t)(v - 1); }
static uint16_t c_u16(hv_device *d, uint16_t v) { (void)d; return (uint16_t)(v + 1); }
static uint32_t c_u32(hv_device *d, uint32_t v) { (void)d; return v + 1; }
static int c_not(hv_device *d, int v) { (void)d; return !v; }
static void c_reg(hv_device *d, char *buf, size_t len) { snprintf(buf, len, "reg 0x%x calls %llu", d->reg, (unsigned long long)d->calls); }

static const uint32_t a_ints[] = { HV_ARG_I8, HV_ARG_I16, HV_ARG_I32, HV_ARG_I64 };
static const uint32_t a_uints[] = { HV_ARG_U8, HV_ARG_U16, HV_ARG_U32, HV_ARG_U64 };
static const uint32_t a_mix[] = { HV_ARG_DOUBLE, HV_ARG_BOOL, HV_ARG_STRING, HV_ARG_TEXT_OUT };
static const char *const n_mix[] = { "x", "flag", "s", "out" };
static const uint32_t a_i8[] = { HV_ARG_I8 }, a_u8[] = { HV_ARG_U8 }, a_i16[] = { HV_ARG_I16 },
    a_u16[] = { HV_ARG_U16 }, a_u32[] = { HV_ARG_U32 }, a_bool[] = { HV_ARG_BOOL }, a_text[] = { HV_ARG_TEXT_OUT };

#define CMD(name, fn, res, n, args, names) \
    { sizeof(hv_command), 0, name, NULL, (void (*)(void))fn, res, n, args, names }
static const hv_command commands[] = {
    CMD("ints", c_ints, HV_ARG_I64, 4, a_ints, NULL),
    CMD("uints", c_uints, HV_ARG_U64, 4, a_uints, NULL),
    CMD("mix", c_mix, HV_ARG_DOUBLE, 4, a_mix, n_mix),
    CMD("i8", c_i8, HV_ARG_I8, 1, a_i8, NULL),
    CMD("u8", c_u8, HV_ARG_U8, 1, a_u8, NULL),
    CMD("i16", c_i16, HV_ARG_I16, 1, a_i16, NULL),
    CMD("u16", c_u16, HV_ARG_U16, 1, a_u16, NULL),
    CMD("u32", c_u32, HV_ARG_U32, 1, a_u32, NULL),
    CMD("not", c_not, HV_ARG_BOOL, 1, a_bool, NULL),
    CMD("reg", c_reg, HV_ARG_VOID, 1, a_text, NULL),
};

static const hv_config_key keys[] = {
    { sizeof(hv_config_key), HV_KEY_ENUM, "mode", 0, 0, "fast|slow", "fast", "a choice" },
};

static int create(const hv_host_services *hs, hv_host *host, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->hs = hs; d->host = host;
    hv_pci_identity id = { sizeof id, 0x1b36, 0x00fe, 0, 0, 0xff0000, 0, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 4096, bar_read, bar_write };
    int r = hs->pci_set_identity(host, &id);
    if (r >= 0) r = hs->pci_add_bar(host, &bar);
    if (r < 0) { free(d); return r; }
    *out = d;
    return HV_OK;
}
static void reset(hv_device *d) { d->reg = 0; }
static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { sizeof ops, NULL, reset, NULL, NULL, NULL, NULL, destroy };
static const hv_device_model model = {
    sizeof model, HV_DEVICE_KIND_OTHER, "argprobe", "every command argument type", 0, 1, create, &ops,
    1, sizeof commands / sizeof commands[0], keys, commands,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof factory, HV_ABI_VERSION, 1, 0, models };
static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }
static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    sizeof entry, HV_ABI_VERSION, "org.hvproject.test.argprobe", "argprobe", "1.0", NULL, NULL, NULL,
    get_factory, ids, NULL,
};
__attribute__((visibility("default"))) const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
