/* A NIC probe for network ports as queues. Built against the current header as
 * "netprobe" (uses "hv.net-queue/1": send_guest, rx_backpressure, rx_ready) and against
 * the frozen 1.0 header (Fixtures/abi-1.0) as "netprobe10" (net_send only; its receive
 * is a 1.0 callback, now called on the port's receive thread). Not thread-safe: the host
 * serialises every call, receive included, with the device lock. MAC: the config's
 * generatedAddress. Registers (BAR0, 8-byte accesses):
 *   0x00 R  1 when "hv.net-queue/1" was found and rx_backpressure(port, 1) returned HV_OK
 *   0x08 W  gpa of the next segment
 *   0x10 W  length of the next segment: appends (gpa, length, reserved) to the list
 *   0x18 W  send_guest(list, pad_to = value); R: its result. Clears the list.
 *   0x20 W  net_send of the list's bytes (read with mem_read); R: its result. Clears the list.
 *   0x28 W  room += value, then rx_ready; R: room (frames receive may still take)
 *   0x30 R  frames taken
 *   0x38 R  receive calls answered HV_EAGAIN (no room)
 *   0x40 R  pthread_self() of the last receive call
 *   0x48 R  pthread_self() of the last send (0x18 / 0x20)
 *   0x50 R  length of the last frame taken
 *   0x58 W  reserved field of the following segments
 *   0x100.. R  the last frame taken, 8 bytes per register */
#define _POSIX_C_SOURCE 200809L
#include <hvplugin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PROBE_NAME
#define PROBE_NAME "netprobe"
#endif

#define MAX_SEGS 80
#define MAX_FRAME 2048

struct hv_device {
    const hv_host_services *s;
    hv_host *h;
    hv_net_port *port;
#ifdef HV_EXT_NET_QUEUE
    const hv_net_queue_ext *q;
    hv_net_segment segs[MAX_SEGS];
#endif
    uint64_t gpa[MAX_SEGS], len[MAX_SEGS];
    uint32_t nsegs, reserved;
    uint64_t next_gpa;
    int ext_ok;
    int64_t guest_rc, flat_rc;
    uint64_t room, taken, eagain, rx_thread, tx_thread, last_len;
    uint8_t last[MAX_FRAME];
    uint8_t flat[65536];
};

static int receive(hv_device *d, const void *frame, size_t len) {
    d->rx_thread = (uint64_t)pthread_self();
    if (d->room == 0) {
        d->eagain++;
        return HV_EAGAIN;
    }
    d->room--;
    d->taken++;
    d->last_len = len;
    memcpy(d->last, frame, len < MAX_FRAME ? len : MAX_FRAME);
    return HV_OK;
}

static uint64_t rd(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    if (off >= 0x100 && off + 8 <= 0x100 + MAX_FRAME) {
        uint64_t v;
        memcpy(&v, d->last + (off - 0x100), 8);
        return v;
    }
    switch (off) {
    case 0x00: return (uint64_t)d->ext_ok;
    case 0x18: return (uint64_t)d->guest_rc;
    case 0x20: return (uint64_t)d->flat_rc;
    case 0x28: return d->room;
    case 0x30: return d->taken;
    case 0x38: return d->eagain;
    case 0x40: return d->rx_thread;
    case 0x48: return d->tx_thread;
    case 0x50: return d->last_len;
    default: return 0;
    }
}

static void wr(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    switch (off) {
    case 0x08: d->next_gpa = v; break;
    case 0x10:
        if (d->nsegs < MAX_SEGS) {
            d->gpa[d->nsegs] = d->next_gpa;
            d->len[d->nsegs] = v;
#ifdef HV_EXT_NET_QUEUE
            hv_net_segment seg = { d->next_gpa, (uint32_t)v, d->reserved };
            d->segs[d->nsegs] = seg;
#endif
            d->nsegs++;
        }
        break;
    case 0x18:
        d->tx_thread = (uint64_t)pthread_self();
#ifdef HV_EXT_NET_QUEUE
        d->guest_rc = d->q ? d->q->send_guest(d->port, d->segs, d->nsegs, (uint32_t)v) : HV_ENOSYS;
#else
        d->guest_rc = HV_ENOSYS;
#endif
        d->nsegs = 0;
        break;
    case 0x20: {
        d->tx_thread = (uint64_t)pthread_self();
        size_t at = 0;
        d->flat_rc = HV_OK;
        for (uint32_t i = 0; i < d->nsegs; i++) {
            if (at + d->len[i] > sizeof d->flat ||
                d->s->mem_read(d->h, d->gpa[i], d->flat + at, (size_t)d->len[i]) != HV_OK) {
                d->flat_rc = HV_EFAULT;
                break;
            }
            at += (size_t)d->len[i];
        }
        if (d->flat_rc == HV_OK) d->flat_rc = d->s->net_send(d->port, d->flat, at);
        d->nsegs = 0;
        break;
    }
    case 0x28:
        d->room += v;
#ifdef HV_EXT_NET_QUEUE
        if (d->q) d->q->rx_ready(d->port);
#endif
        break;
    case 0x58: d->reserved = (uint32_t)v; break;
    default: break;
    }
}

static int parse_mac(const char *s, uint8_t mac[6]) {
    unsigned b[6];
    if (!s || sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) return 0;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)b[i];
    return 1;
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->s = s;
    d->h = h;
    hv_pci_identity id = { sizeof id, 0x1234, 0x11e2, 0, 0, 0x020000, 1, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 4096, rd, wr };
    hv_net_client client;
    memset(&client, 0, sizeof client);
    client.struct_size = sizeof client;
    client.receive = receive;
    int rc = s->pci_set_identity(h, &id);
    if (rc == 0) rc = s->pci_add_bar(h, &bar);
    if (rc == 0 && !parse_mac(s->config_get(h, "generatedAddress"), client.mac)) rc = HV_EINVAL;
    if (rc == 0) rc = s->net_attach(h, &client, &d->port);
#ifdef HV_EXT_NET_QUEUE
    if (rc == 0) {
        d->q = s->get_extension(h, HV_EXT_NET_QUEUE);
        d->ext_ok = d->q && d->q->struct_size >= sizeof(hv_net_queue_ext) &&
                    d->q->rx_backpressure(d->port, 1) == HV_OK;
    }
#endif
    if (rc) {
        free(d);
        return rc;
    }
    *out = d;
    return HV_OK;
}

static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_NIC, .name = PROBE_NAME,
    .description = "network queue probe", .flags = 0, .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof factory, HV_ABI_VERSION, 1, 0, models };

static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }

static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION, .id = "org.test." PROBE_NAME,
    .name = "Network queue probe", .version = "1.0", .get_factory = get_factory, .factory_ids = ids,
};

const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
