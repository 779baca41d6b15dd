/* A thread-safe probe device for the device lifecycle: counts pause/resume/receive,
 * and frees itself in destroy after timer_cancel_wait, as a thread-safe model must.
 * Registers (BAR0):
 *   0x00 R  pause calls      0x08 R  resume calls      0x10 R  frames received
 *   0x18 W  arm the slow timer now (its callback sleeps 100 ms)
 *   0x20 R  1 once that callback has started
 * What destroy saw is kept after the instance is freed: lifecycle_probe_report(). */
#define _POSIX_C_SOURCE 200809L
#include <hvplugin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct hv_device {
    const hv_host_services *s;
    hv_host *h;
    hv_timer *timer;
    hv_net_port *port;
    const hv_timer_ext *timer_ext;
    atomic_int pauses, resumes, received, started, finished;
};

static int destroy_rc = 1, destroy_finished = -1;

/* What destroy's timer_cancel_wait returned, and whether the callback had finished
 * when it returned (1) or not (0); -1 before any destroy. */
void lifecycle_probe_report(int *rc, int *finished) {
    *rc = destroy_rc;
    *finished = destroy_finished;
}

static void slow(hv_device *d, void *opaque) {
    (void)opaque;
    atomic_store(&d->started, 1);
    struct timespec t = { 0, 100 * 1000000L };
    nanosleep(&t, NULL);
    atomic_store(&d->finished, 1);
}

static uint64_t rd(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    switch (off) {
    case 0x00: return (uint64_t)atomic_load(&d->pauses);
    case 0x08: return (uint64_t)atomic_load(&d->resumes);
    case 0x10: return (uint64_t)atomic_load(&d->received);
    case 0x20: return (uint64_t)atomic_load(&d->started);
    default: return 0;
    }
}

static void wr(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size; (void)v;
    if (off == 0x18) d->s->timer_arm(d->h, d->timer, d->s->clock_ns(d->h));
}

static int receive(hv_device *d, const void *frame, size_t len) {
    (void)frame; (void)len;
    atomic_fetch_add(&d->received, 1);
    return HV_OK;
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->s = s;
    d->h = h;
    d->timer_ext = s->get_extension(h, HV_EXT_TIMER);
    hv_pci_identity id = { sizeof id, 0x1234, 0x11fe, 0, 0, 0xff0000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 4096, rd, wr };
    hv_net_client client = { sizeof client, {0x02, 0, 0, 0, 0x11, 0xfe}, {0, 0}, receive, NULL };
    int rc = d->timer_ext ? 0 : HV_ENOTSUP;
    if (rc == 0) rc = s->pci_set_identity(h, &id);
    if (rc == 0) rc = s->pci_add_bar(h, &bar);
    if (rc == 0) rc = s->net_attach(h, &client, &d->port);
    if (rc == 0 && !(d->timer = s->timer_create(h, slow, NULL))) rc = HV_ENOMEM;
    if (rc) { free(d); return rc; }
    *out = d;
    return HV_OK;
}

static void on_pause(hv_device *d) { atomic_fetch_add(&d->pauses, 1); }
static void on_resume(hv_device *d) { atomic_fetch_add(&d->resumes, 1); }

static void destroy(hv_device *d) {
    destroy_rc = d->timer_ext->timer_cancel_wait(d->h, d->timer);
    destroy_finished = atomic_load(&d->finished);
    free(d);
}

static const hv_device_ops ops = {
    .struct_size = sizeof(hv_device_ops), .pause = on_pause, .resume = on_resume, .destroy = destroy,
};
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "lifecycleprobe",
    .description = "device lifecycle probe", .flags = HV_DEVICE_THREAD_SAFE, .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof factory, HV_ABI_VERSION, 1, 0, models };
static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }
static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION,
    .id = "org.test.lifecycleprobe", .name = "Lifecycle Probe", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
