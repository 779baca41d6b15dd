/* An "HBA" that drives the host's SCSI layer ("hv.scsi/1") from BAR0 registers, so
 * tests can exercise bus_open, target_mask, submit, completions and abort_all through
 * the real ABI. 8-byte registers:
 *   0x00 target  0x08 lun  0x10 direction  0x18 buffer guest address  0x20 buffer bytes
 *   0x28 segments: the buffer is split into this many equal pieces (0: no segments);
 *        bit 31 appends a zero-length segment
 *   0x30, 0x38 CDB bytes 0-7 and 8-15 (little-endian)  0x40 cdb_len  0x48 tag
 *   0x50 command (write): 1 submit, 2 abort_all(target as int32), 3 the same with reset
 *   0x58 last submit/abort result  0x60 completions  0x68 last host_status
 *   0x70 last status  0x78 last residual  0x80 last sense_len  0x88 last tag
 *   0x90, 0x98, 0xA0 last sense bytes 0-23  0xA8 target mask  0xB0 bus_open result
 *   0xB8 size of struct hv_scsi_result seen */
#include "hvplugin.h"
#include <stdlib.h>
#include <string.h>

#define REGS 24

struct hv_device {
    const hv_host_services *hs;
    const hv_scsi_ext *scsi;
    hv_scsi_bus *bus;
    uint64_t reg[REGS];
};

static void store(hv_device *d, unsigned r, uint64_t v) { __atomic_store_n(&d->reg[r], v, __ATOMIC_SEQ_CST); }

static void complete(hv_device *d, uint64_t tag, const hv_scsi_result *res) {
    uint64_t sense[3] = { 0, 0, 0 };
    memcpy(sense, res->sense, sizeof sense);
    store(d, 0x68 / 8, res->host_status);
    store(d, 0x70 / 8, res->status);
    store(d, 0x78 / 8, res->residual);
    store(d, 0x80 / 8, res->sense_len);
    store(d, 0x88 / 8, tag);
    store(d, 0x90 / 8, sense[0]);
    store(d, 0x98 / 8, sense[1]);
    store(d, 0xA0 / 8, sense[2]);
    store(d, 0xB8 / 8, res->struct_size);
    __atomic_add_fetch(&d->reg[0x60 / 8], 1, __ATOMIC_SEQ_CST);
}

static int submit(hv_device *d) {
    hv_disk_segment segs[HV_SCSI_MAX_SEGMENTS + 2];
    uint64_t pieces = d->reg[0x28 / 8] & 0x7fffffffu, bytes = d->reg[0x20 / 8];
    uint32_t n = 0;
    for (uint64_t i = 0; i < pieces && n < HV_SCSI_MAX_SEGMENTS + 1; i++) {
        uint64_t from = bytes * i / pieces, to = bytes * (i + 1) / pieces;
        segs[n].gpa = d->reg[0x18 / 8] + from;
        segs[n].len = (uint32_t)(to - from);
        segs[n].reserved = 0;
        n++;
    }
    if (d->reg[0x28 / 8] & 0x80000000u) {
        segs[n].gpa = d->reg[0x18 / 8];
        segs[n].len = 0;
        segs[n].reserved = 0;
        n++;
    }
    hv_scsi_request req;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.target = (uint32_t)d->reg[0];
    req.lun = (uint32_t)d->reg[1];
    req.direction = (uint32_t)d->reg[2];
    memcpy(req.cdb, &d->reg[0x30 / 8], 16);
    req.cdb_len = (uint32_t)d->reg[0x40 / 8];
    req.segment_count = n;
    req.segments = n ? segs : NULL;
    req.tag = d->reg[0x48 / 8];
    req.complete = complete;
    int rc = d->scsi->submit(d->bus, &req);
    /* The host copied everything it needs: scribble over the request and segments. */
    memset(&req, 0xA5, sizeof req);
    memset(segs, 0xA5, sizeof segs);
    return rc;
}

static uint64_t bar_read(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    if (off == 0xA8) return d->scsi->target_mask(d->bus);
    return off / 8 < REGS ? __atomic_load_n(&d->reg[off / 8], __ATOMIC_SEQ_CST) : ~(uint64_t)0;
}

static void bar_write(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    if (off < 0x50) { d->reg[off / 8] = v; return; }
    if (off != 0x50) return;
    int rc = HV_EINVAL;
    if (v == 1) rc = submit(d);
    else if (v == 2 || v == 3) rc = d->scsi->abort_all(d->bus, (int32_t)d->reg[0], v == 3);
    store(d, 0x58 / 8, (uint64_t)(int64_t)rc);
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->hs = s;
    hv_pci_identity id = { sizeof id, 0x1234, 0x5c51, 0, 0, 0x010000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 0x1000, bar_read, bar_write };
    int rc = s->pci_set_identity(h, &id);
    if (rc == 0) rc = s->pci_add_bar(h, &bar);
    d->scsi = (const hv_scsi_ext *)s->get_extension(h, HV_EXT_SCSI);
    if (rc == 0 && (!d->scsi || d->scsi->struct_size < sizeof(hv_scsi_ext))) rc = HV_ENOSYS;
    if (rc == 0) rc = d->scsi->bus_open(h, &d->bus);
    d->reg[0xB0 / 8] = (uint64_t)(int64_t)rc;
    if (rc < 0) { free(d); return rc; }
    *out = d;
    return HV_OK;
}

static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_SCSI, .name = "scsiprobe",
    .description = "drives the SCSI layer from registers", .flags = HV_DEVICE_THREAD_SAFE,
    .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof(hv_device_factory), HV_ABI_VERSION, 1, 0, models };
static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : 0; }
static const char *const ids[] = { HV_FACTORY_DEVICE, 0 };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION,
    .id = "org.test.scsiprobe", .name = "SCSI probe", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
