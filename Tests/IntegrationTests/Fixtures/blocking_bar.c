/* A PCI device (1234:57a1) whose BAR 0 (16 I/O ports) read does not return in time:
 * `<prefix>.stall = "loop"` spins forever, otherwise it sleeps `<prefix>.stallMs`
 * milliseconds (default 10000, resumed after signals). `<prefix>.stall = "open"` instead
 * opens /etc/hostname from the read (a system call vCPU threads may not make). The guests/stall guest reads it
 * once; the host must report the call, give the vCPU's pCPU slot back and, past its
 * limit, fail this VM alone. */
#define _POSIX_C_SOURCE 200809L
#include "hvplugin.h"
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

struct hv_device { int loop, open; long ms; };

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static uint64_t bar_read(hv_device *d, uint32_t bar, uint64_t offset, uint32_t size) {
    (void)bar; (void)offset; (void)size;
    if (d->open) {
        int fd = open("/etc/hostname", O_RDONLY);
        if (fd >= 0) close(fd);
        return 0x57a1;
    }
    if (d->loop) for (volatile int spin = 1; spin;) {}
    uint64_t end = now_ms() + (uint64_t)d->ms;
    while (now_ms() < end) {
        struct timespec slice = { 0, 10000000 };
        nanosleep(&slice, NULL);
    }
    return 0x57a1;
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    const char *mode = s->config_get(h, "stall");
    const char *ms = s->config_get(h, "stallMs");
    d->loop = mode && strcmp(mode, "loop") == 0;
    d->open = mode && strcmp(mode, "open") == 0;
    d->ms = ms ? strtol(ms, NULL, 10) : 10000;
    hv_pci_identity id = { sizeof id, 0x1234, 0x57a1, 0, 0, 0xff0000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_IO, 0, 16, bar_read, NULL };
    int rc = s->pci_set_identity(h, &id);
    if (rc == HV_OK) rc = s->pci_add_bar(h, &bar);
    if (rc < 0) { free(d); return rc; }
    *out = d;
    return HV_OK;
}

static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "blocking-bar",
    .description = "a BAR read that does not return in time", .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof(hv_device_factory), HV_ABI_VERSION, 1, 0, models };
static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }
static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION,
    .id = "org.test.blocking-bar", .name = "Blocking BAR", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
