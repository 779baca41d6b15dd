/* A device that drives the host's disk backend from BAR0 registers, so tests can
 * exercise disk_open/disk_info/disk_submit and completions through the real ABI:
 *   0x00 sector, 0x08 guest address, 0x10 byte count, 0x18 command (1 read, 2 write,
 *   3 flush; writing it submits), 0x20 last submit result, 0x28 completions,
 *   0x30 last completion result, 0x38 capacity in sectors, 0x40 read-only flag. */
/* Built twice by the tests: against the current header and against the frozen 1.0
 * header (Fixtures/abi-1.0) as "diskprobe10", proving a 1.0 plugin still runs. */
#ifndef PROBE_NAME
#define PROBE_NAME "diskprobe"
#endif
#include "hvplugin.h"
#include <stdlib.h>
#include <string.h>

struct hv_device {
    const hv_host_services *hs;
    hv_host *host;
    hv_disk *disk;
    uint64_t reg[8];
    hv_disk_info info;
};

static void complete(hv_device *d, uint64_t tag, int64_t result) {
    (void)tag;
    __atomic_store_n(&d->reg[6], (uint64_t)result, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&d->reg[5], 1, __ATOMIC_SEQ_CST);
}

static uint64_t bar_read(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    if (off == 0x38) return d->info.sectors;
    if (off == 0x40) return d->info.read_only;
    return off / 8 < 8 ? __atomic_load_n(&d->reg[off / 8], __ATOMIC_SEQ_CST) : ~(uint64_t)0;
}

static void bar_write(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    if (off / 8 >= 4) return;
    d->reg[off / 8] = v;
    if (off == 0x18) {
        hv_disk_segment seg = { d->reg[1], (uint32_t)d->reg[2], 0 };
        hv_disk_request req = { sizeof req, (uint32_t)v, d->reg[0], &seg, v == HV_DISK_FLUSH ? 0u : 1u, 0, 7, complete };
        d->reg[4] = (uint64_t)(int64_t)d->hs->disk_submit(d->disk, &req);
    }
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->hs = s;
    d->host = h;
    hv_pci_identity id = { sizeof id, 0x1234, 0xd15c, 0, 0, 0x018000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 0x1000, bar_read, bar_write };
    int rc = s->pci_set_identity(h, &id);
    if (rc == 0) rc = s->pci_add_bar(h, &bar);
    if (rc == 0) rc = s->disk_open(h, 0, &d->disk);
    d->info.struct_size = sizeof d->info;
    if (rc == 0) rc = s->disk_info(d->disk, &d->info);
    if (rc < 0) { free(d); return rc; }
    *out = d;
    return HV_OK;
}

static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_SCSI, .name = PROBE_NAME,
    .description = "drives the disk backend from registers", .flags = HV_DEVICE_THREAD_SAFE,
    .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof(hv_device_factory), HV_ABI_VERSION, 1, 0, models };
static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : 0; }
static const char *const ids[] = { HV_FACTORY_DEVICE, 0 };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION,
    .id = "org.test." PROBE_NAME, .name = "Disk probe", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
