/* A thread-safe probe device for the ABI 1.1 core: init_with_info, get_extension,
 * the "hv.timer/1" extension and the plugin log service. Registers (BAR0, 8 bytes):
 *   0x00 R  1 when init_with_info ran with a path ending in "/libextprobe.so"
 *   0x08 R  1 when get_extension(HV_EXT_TIMER) answered a table of the right size
 *   0x10 R  1 when get_extension of an unknown id answered NULL
 *   0x18 R  the host ABI version init_with_info saw
 *   0x20 W  arm the timer now
 *   0x28 W  wait for the callback to start, then timer_cancel_wait from this thread
 *   0x30 R  result of that timer_cancel_wait
 *   0x38 R  1 when the callback had finished when timer_cancel_wait returned
 *   0x40 R  what timer_cancel_wait returned when the callback called it on itself
 *   0x48 W  log the value through the host's log service */
#define _POSIX_C_SOURCE 200809L
#include <hvplugin.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int path_ok;
static uint32_t host_abi;

struct hv_device {
    const hv_host_services *s;
    hv_host *h;
    const hv_timer_ext *timer_ext;
    hv_timer *timer;
    atomic_int started, cancelling, finished;
    int64_t wait_rc, self_rc;
    uint64_t finished_at_return;
    int unknown_is_null;
};

static void pause_ms(long ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

static void tick(hv_device *d, void *opaque) {
    (void)opaque;
    d->self_rc = d->timer_ext->timer_cancel_wait(d->h, d->timer);
    atomic_store(&d->started, 1);
    while (!atomic_load(&d->cancelling)) { }
    /* Long enough that a cancel that did not wait would be seen returning first. */
    pause_ms(30);
    atomic_store(&d->finished, 1);
}

static uint64_t rd(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    switch (off) {
    case 0x00: return (uint64_t)path_ok;
    case 0x08: return d->timer_ext && d->timer_ext->struct_size >= sizeof(hv_timer_ext);
    case 0x10: return (uint64_t)d->unknown_is_null;
    case 0x18: return host_abi;
    case 0x30: return (uint64_t)d->wait_rc;
    case 0x38: return d->finished_at_return;
    case 0x40: return (uint64_t)d->self_rc;
    default: return 0;
    }
}

static void wr(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    if (off == 0x20) {
        d->s->timer_arm(d->h, d->timer, d->s->clock_ns(d->h));
    } else if (off == 0x28) {
        for (int i = 0; i < 5000 && !atomic_load(&d->started); i++) pause_ms(1);
        atomic_store(&d->cancelling, 1);
        d->wait_rc = d->timer_ext->timer_cancel_wait(d->h, d->timer);
        d->finished_at_return = (uint64_t)atomic_load(&d->finished);
    } else if (off == 0x48) {
        char msg[64];
        snprintf(msg, sizeof msg, "probe value %llu", (unsigned long long)v);
        d->s->log(d->h, HV_LOG_INFO, msg);
    }
}

static struct hv_device instance;

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    if (s->struct_size < offsetof(hv_host_services, get_extension) + sizeof(void *)) return HV_ENOTSUP;
    memset(&instance, 0, sizeof instance);
    instance.s = s;
    instance.h = h;
    instance.timer_ext = s->get_extension(h, HV_EXT_TIMER);
    instance.unknown_is_null = s->get_extension(h, "hv.no-such-extension/1") == NULL;
    if (!instance.timer_ext) return HV_ENOTSUP;
    hv_pci_identity id = { sizeof id, 0x1234, 0x11e1, 0, 0, 0xff0000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 4096, rd, wr };
    int rc = s->pci_set_identity(h, &id);
    if (rc == 0) rc = s->pci_add_bar(h, &bar);
    if (rc) return rc;
    instance.timer = s->timer_create(h, tick, NULL);
    if (!instance.timer) return HV_ENOMEM;
    *out = &instance;
    return HV_OK;
}

static void destroy(hv_device *d) { (void)d; }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "extprobe",
    .description = "ABI 1.1 core probe", .flags = HV_DEVICE_THREAD_SAFE, .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof factory, HV_ABI_VERSION, 1, 0, models };

static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }

static int init_with_info(const hv_plugin_load_info *info) {
    const char *suffix = "/libextprobe.so";
    size_t n = strlen(info->plugin_path), k = strlen(suffix);
    path_ok = info->plugin_path[0] == '/' && n > k && strcmp(info->plugin_path + n - k, suffix) == 0;
    host_abi = info->abi_version;
    return HV_OK;
}

static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION, .id = "org.test.extprobe",
    .name = "Extension probe", .version = "1.0", .get_factory = get_factory, .factory_ids = ids,
    .init_with_info = init_with_info,
};

const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
