/*
 * vmxnet-ping: a VMXNET3 (15ad:07b0, VMware's "vmxnet") driver, probed like Linux
 * vmxnet3 (revision and UPT version negotiation, DriverShared + queue descriptor table,
 * ACTIVATE_DEV), under the shared test roles of runtime/net.c (ping / respond / sniff /
 * flood / sink / info).
 *
 * Kernel mode (emulated on the PVM host, so kept tiny): PCI probe, MSI-X (or INTx) set
 * up, the interrupt handler (INTx: read ICR) and WAIT (unmask vector 0, check, sti;hlt).
 * Ring 3 (native): everything else, register accesses included (the identity map lets
 * ring 3 reach the BARs): shared area, rings, buffers, TXPROD doorbells, the protocol.
 * The device auto-masks vector 0 when it fires, so a busy ring-3 loop takes no
 * interrupts; WAIT unmasks it before sleeping.
 *
 * Command line: see runtime/net.h, plus
 *   queues=N   tx and rx queues (1..4, default 1); with N > 1, RSS over IPv4 + UDP ports
 *   mtu=M      1500 (default) or up to 9000 (ring-2 buffers take the rest of a frame)
 *   intr=intx  use the INTx pin instead of MSI-X
 */
#include "net.h"

#define VMXNET3_VENDOR 0x15AD
#define VMXNET3_DEVICE 0x07B0

/* BAR0 */
#define PT_IMR(v) (0x000 + 8 * (v))
#define PT_TXPROD(q) (0x600 + 8 * (q))
#define PT_RXPROD(q) (0x800 + 8 * (q))
#define PT_RXPROD2(q) (0xA00 + 8 * (q))
/* BAR1 */
#define VD_VRRS 0x00
#define VD_UVRS 0x08
#define VD_DSAL 0x10
#define VD_DSAH 0x18
#define VD_CMD  0x20
#define VD_MACL 0x28
#define VD_MACH 0x30
#define VD_ICR  0x38
#define VD_ECR  0x40

#define CMD_ACTIVATE_DEV    0xCAFE0000u
#define CMD_QUIESCE_DEV     0xCAFE0001u
#define CMD_SET_RSS_FIELDS  0xCAFE0010u
#define CMD_GET_STATS       0xF00D0001u
#define CMD_GET_LINK        0xF00D0002u

#define MSIX_VECTOR 0x50
#define MAX_QUEUES 4
#define MAX_RING 512
#define RXBUF 2048
#define TXBUF_STD 1536
#define TXBUF_JUMBO 9216
#define DS_SIZE 720

/* ------------------------------------------------------- kernel side */
static uint64_t bar0, bar1;
static unsigned irq;
static bool use_msix;
static volatile uint32_t irqs, icr_zero;

static void on_msix(struct int_frame *f)
{
    (void)f;
    irqs++;
    lapic_eoi();
}

static void on_intx(struct int_frame *f)
{
    (void)f;
    if (mmio_read32(bar1 + VD_ICR))
        irqs++;
    else
        icr_zero++;
    pic_eoi(irq);
}

#define SYS_WAIT (KSYS_DRIVER + 0)

/* Unmask vector 0 (the device masked it when it fired), then sleep unless the dword at
 * a0 no longer reads a1 (a completion arrived meanwhile). */
static uint64_t k_wait(uint64_t a0, uint64_t a1)
{
    mmio_write32(bar0 + PT_IMR(0), 0);
    if (a0 && *(volatile uint32_t *)a0 != (uint32_t)a1)
        return 1;
    wait_irq();
    return 0;
}

/* ------------------------------------------------------- ring-3 side */
struct desc {
    uint64_t addr;
    volatile uint32_t d2;
    volatile uint32_t d3;
};

struct txq {
    struct desc *ring, *comp;
    uint8_t *buf;
    unsigned fill, fill_gen, comp_idx, comp_gen;
    unsigned head, tail; /* free-running: reclaimed / submitted */
    uint32_t frames;
};

struct rxring {
    struct desc *ring;
    uint8_t *buf;
    unsigned fill, fill_gen;
};

struct rxq {
    struct rxring r[2];
    struct desc *comp;
    unsigned comp_idx, comp_gen;
    uint32_t frames;
};

struct vmx {
    struct netif nif;
    uint8_t *shared;
    uint8_t *qdesc;
    unsigned nq, n, txbuf;
    struct txq tx[MAX_QUEUES];
    struct rxq rx[MAX_QUEUES];
    unsigned tx_cur, rx_cur;
    /* the packet rx_peek returned: its queue and buffers */
    struct rxq *pq;
    unsigned pbufs, pring[8], pidx[8];
    uint8_t prod_due[MAX_QUEUES]; /* rings re-posted since the last RXPROD write (bit 0/1) */
    uint8_t *bounce;
    uint32_t rx_errors, rx_multi, kicks, waits, refill_mismatch;
};
static struct vmx vx;

static void w32(uint64_t base, unsigned off, uint32_t v) { mmio_write32(base + off, v); }
static uint32_t r32(uint64_t base, unsigned off) { return mmio_read32(base + off); }

static uint32_t command(uint32_t cmd)
{
    w32(bar1, VD_CMD, cmd);
    return r32(bar1, VD_CMD);
}

static void rx_post(struct rxring *r, unsigned i, unsigned btype)
{
    struct desc *d = &r->ring[i];
    d->addr = (uint64_t)(r->buf + (size_t)i * RXBUF);
    d->d3 = 0;
    barrier();
    d->d2 = RXBUF | btype << 14 | (uint32_t)r->fill_gen << 31;
    if (++r->fill == vx.n) {
        r->fill = 0;
        r->fill_gen ^= 1;
    }
}

static bool comp_ready(const struct desc *d, unsigned gen)
{
    return (d->d3 >> 31) == gen;
}

/* While the device waits for buffers (updateRxProd) it wants an RXPROD write: one per
 * batch, when the driver has caught up, not one per buffer (each is an exit). */
static void rx_prod_flush(struct vmx *v)
{
    for (unsigned q = 0; q < v->nq; q++) {
        if (!v->prod_due[q] || !v->qdesc[(v->nq + q) * 256])
            continue;
        if (v->prod_due[q] & 1)
            w32(bar0, PT_RXPROD(q), v->rx[q].r[0].fill);
        if (v->prod_due[q] & 2)
            w32(bar0, PT_RXPROD2(q), v->rx[q].r[1].fill);
        v->prod_due[q] = 0;
    }
}

static const uint8_t *vx_rx_peek(struct netif *nif, unsigned *len)
{
    struct vmx *v = (struct vmx *)nif;
    for (unsigned k = 0; k < v->nq; k++) {
        struct rxq *q = &v->rx[(v->rx_cur + k) % v->nq];
        for (;;) {
            struct desc *c = &q->comp[q->comp_idx];
            if (!comp_ready(c, q->comp_gen))
                break;
            barrier();
            unsigned total = 0, nb = 0;
            bool err = false;
            uint8_t *bp[8];
            unsigned bl[8];
            /* the device writes a packet's completions together: follow them to EOP */
            for (;;) {
                while (!comp_ready(&q->comp[q->comp_idx], q->comp_gen))
                    pause();
                barrier();
                c = &q->comp[q->comp_idx];
                uint32_t d0 = (uint32_t)c->addr, d2 = c->d2;
                unsigned rq = (d0 >> 16) & 0x3FF, idx = d0 & 0xFFF, l = d2 & 0x3FFF;
                unsigned ring = rq >= v->nq ? 1 : 0;
                if (++q->comp_idx == 2 * v->n) {
                    q->comp_idx = 0;
                    q->comp_gen ^= 1;
                }
                if (d2 & (1u << 14))
                    err = true;
                if (nb < 8) {
                    v->pring[nb] = ring;
                    v->pidx[nb] = idx;
                    bp[nb] = q->r[ring].buf + (size_t)(idx % v->n) * RXBUF;
                    bl[nb] = l;
                    nb++;
                } else {
                    err = true;
                }
                total += l;
                if (d0 & (1u << 14))
                    break;
            }
            bool multi = nb > 1 && total > bl[0];
            if (multi && !err && total <= TXBUF_JUMBO) {
                unsigned off = 0;
                for (unsigned i = 0; i < nb; i++) {
                    memcpy(v->bounce + off, bp[i], bl[i]);
                    off += bl[i];
                }
            }
            v->pq = q;
            v->pbufs = nb;
            if (err || total < ETH_HLEN || total > TXBUF_JUMBO) {
                v->rx_errors++;
                nif->rx_release(nif);
                continue;
            }
            v->rx_cur = (unsigned)(q - v->rx);
            if (multi)
                v->rx_multi++;
            *len = total;
            return multi ? v->bounce : bp[0];
        }
    }
    rx_prod_flush(v);
    return NULL;
}

static void vx_rx_release(struct netif *nif)
{
    struct vmx *v = (struct vmx *)nif;
    struct rxq *q = v->pq;
    if (!q)
        return;
    unsigned qi = (unsigned)(q - v->rx);
    for (unsigned i = 0; i < v->pbufs; i++) {
        struct rxring *r = &q->r[v->pring[i]];
        if (v->pidx[i] != r->fill)
            v->refill_mismatch++;
        rx_post(r, r->fill, v->pring[i]);
        v->prod_due[qi] |= (uint8_t)(1u << v->pring[i]);
    }
    q->frames++;
    v->pq = NULL;
}

static void tx_reclaim(struct txq *t)
{
    while (comp_ready(&t->comp[t->comp_idx], t->comp_gen)) {
        barrier();
        unsigned idx = (uint32_t)t->comp[t->comp_idx].addr & 0xFFF;
        if (++t->comp_idx == vx.n) {
            t->comp_idx = 0;
            t->comp_gen ^= 1;
        }
        /* one descriptor per frame: everything up to idx is done */
        while (t->head != t->tail) {
            unsigned h = t->head % vx.n;
            t->head++;
            t->frames++;
            if (h == idx)
                break;
        }
    }
}

static uint8_t *vx_tx_alloc(struct netif *nif)
{
    struct vmx *v = (struct vmx *)nif;
    struct txq *t = &v->tx[v->tx_cur];
    if (t->tail - t->head == v->n)
        tx_reclaim(t);
    if (t->tail - t->head == v->n)
        return NULL;
    return t->buf + (size_t)(t->tail % v->n) * v->txbuf;
}

static void vx_tx_submit(struct netif *nif, unsigned len)
{
    struct vmx *v = (struct vmx *)nif;
    struct txq *t = &v->tx[v->tx_cur];
    struct desc *d = &t->ring[t->fill];
    d->addr = (uint64_t)(t->buf + (size_t)(t->tail % v->n) * v->txbuf);
    d->d3 = 1u << 12 | 1u << 13; /* EOP, CQ */
    barrier();
    d->d2 = (len & 0x3FFF) | (uint32_t)t->fill_gen << 14;
    if (++t->fill == v->n) {
        t->fill = 0;
        t->fill_gen ^= 1;
    }
    t->tail++;
    v->tx_cur = (v->tx_cur + 1) % v->nq;
}

static void vx_tx_kick(struct netif *nif)
{
    struct vmx *v = (struct vmx *)nif;
    v->kicks++;
    for (unsigned q = 0; q < v->nq; q++)
        if (v->tx[q].tail != v->tx[q].head)
            w32(bar0, PT_TXPROD(q), v->tx[q].fill);
}

static bool vx_tx_done(struct netif *nif)
{
    struct vmx *v = (struct vmx *)nif;
    for (unsigned q = 0; q < v->nq; q++) {
        tx_reclaim(&v->tx[q]);
        if (v->tx[q].head != v->tx[q].tail)
            return false;
    }
    return true;
}

static void vx_wait(struct netif *nif)
{
    struct vmx *v = (struct vmx *)nif;
    v->waits++;
    rx_prod_flush(v);
    /* sleep unless queue 0's next rx completion is already there; other queues and tx
     * completions raise the same vector */
    struct rxq *q = &v->rx[0];
    volatile uint32_t *w = &q->comp[q->comp_idx].d3;
    uint32_t now = *w;
    if ((now >> 31) == q->comp_gen)
        return;
    usys(SYS_WAIT, (uint64_t)w, now);
}

static void vx_stats(struct netif *nif)
{
    struct vmx *v = (struct vmx *)nif;
    command(CMD_GET_STATS);
    uint64_t tx_ok = 0, tx_err = 0, rx_ok = 0, rx_oob = 0;
    for (unsigned q = 0; q < v->nq; q++) {
        const uint64_t *ts = (const uint64_t *)(v->qdesc + q * 256 + 88);
        const uint64_t *rs = (const uint64_t *)(v->qdesc + (v->nq + q) * 256 + 88);
        tx_ok += ts[2] + ts[4] + ts[6];
        tx_err += ts[8] + ts[9];
        rx_ok += rs[2] + rs[4] + rs[6];
        rx_oob += rs[8];
    }
    uprintf("vmxnet: rx %u errors, %u multi-buffer, %u refill mismatches; %u kicks, %u waits, %u irqs "
            "(%u not ours)\n",
            v->rx_errors, v->rx_multi, v->refill_mismatch, v->kicks, v->waits, irqs, icr_zero);
    for (unsigned q = 0; q < v->nq; q++)
        uprintf("vmxnet: queue %u: rx %u frames, tx %u frames\n", q, v->rx[q].frames, v->tx[q].frames);
    uprintf("vmxnet: device stats: tx %lu ok %lu errors, rx %lu ok %lu out-of-buffer\n", tx_ok, tx_err, rx_ok,
            rx_oob);
}

static uint64_t region;
static uint8_t dev_mac[ETH_ALEN];

static uint8_t *carve(uint8_t **p, size_t bytes, size_t align)
{
    uint8_t *r = (uint8_t *)(((uint64_t)*p + align - 1) & ~(uint64_t)(align - 1));
    *p = r + bytes;
    return r;
}

static void put16(uint8_t *p, unsigned o, uint16_t v) { memcpy(p + o, &v, 2); }
static void put32(uint8_t *p, unsigned o, uint32_t v) { memcpy(p + o, &v, 4); }
static void put64(uint8_t *p, unsigned o, uint64_t v) { memcpy(p + o, &v, 8); }

static const uint8_t rss_key[40] = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

static uint64_t app(void)
{
    struct net_config cfg;
    if (!net_parse_config(&cfg))
        return 1;
    struct vmx *v = &vx;
    unsigned nq = (unsigned)net_arg_u64("queues", 1), mtu = (unsigned)net_arg_u64("mtu", 1500);
    if (nq < 1 || nq > MAX_QUEUES || mtu < 60 || mtu > 9000) {
        uprintf("vmxnet: queues=%u (1..%u) or mtu=%u (60..9000) out of range\n", nq, MAX_QUEUES, mtu);
        return 1;
    }
    unsigned n = 32;
    while (n < cfg.ring && n < MAX_RING)
        n <<= 1;
    v->nq = nq;
    v->n = n;
    v->txbuf = mtu > 1500 ? TXBUF_JUMBO : TXBUF_STD;

    uint8_t *p = (uint8_t *)region;
    v->shared = carve(&p, DS_SIZE, 64);
    v->qdesc = carve(&p, 2 * nq * 256, 128);
    uint8_t *rss = carve(&p, 176, 64);
    v->bounce = carve(&p, TXBUF_JUMBO, 64);
    memset((void *)region, 0, (size_t)(p - (uint8_t *)region));
    for (unsigned q = 0; q < nq; q++) {
        struct txq *t = &v->tx[q];
        struct rxq *r = &v->rx[q];
        t->ring = (struct desc *)carve(&p, n * 16, 512);
        t->comp = (struct desc *)carve(&p, n * 16, 512);
        r->r[0].ring = (struct desc *)carve(&p, n * 16, 512);
        r->r[1].ring = (struct desc *)carve(&p, n * 16, 512);
        r->comp = (struct desc *)carve(&p, 2 * n * 16, 512);
        memset(t->ring, 0, (size_t)((uint8_t *)(r->comp + 2 * n) - (uint8_t *)t->ring));
        t->buf = carve(&p, (size_t)n * v->txbuf, 64);
        r->r[0].buf = carve(&p, (size_t)n * RXBUF, 64);
        r->r[1].buf = carve(&p, (size_t)n * RXBUF, 64);
        t->fill_gen = t->comp_gen = r->comp_gen = 1;
        for (int k = 0; k < 2; k++) {
            r->r[k].fill_gen = 1;
            for (unsigned i = 0; i < n; i++)
                rx_post(&r->r[k], i, (unsigned)k); /* ring 1 HEAD buffers, ring 2 BODY */
        }
        uint8_t *tq = v->qdesc + q * 256, *rq = v->qdesc + (nq + q) * 256;
        put64(tq, 16, (uint64_t)t->ring);
        put64(tq, 32, (uint64_t)t->comp);
        put32(tq, 56, n);
        put32(tq, 64, n);
        tq[72] = 0;
        put64(rq, 16, (uint64_t)r->r[0].ring);
        put64(rq, 24, (uint64_t)r->r[1].ring);
        put64(rq, 32, (uint64_t)r->comp);
        put32(rq, 56, n);
        put32(rq, 60, n);
        put32(rq, 64, 2 * n);
        rq[72] = 0;
    }
    if ((uint64_t)p > region + 0x1000000) {
        uprintf("vmxnet: %lu bytes of rings and buffers do not fit in 16 MiB\n", (uint64_t)p - region);
        return 1;
    }
    uint8_t *ds = v->shared;
    put32(ds, 0, 0xBABEFEE1);
    put32(ds, 8, 1);                 /* driverInfo.version */
    put32(ds, 12, 2 | 1 << 2);       /* 64-bit, "Linux"-type guest */
    put32(ds, 16, 1);                /* revisions supported */
    put32(ds, 20, 1);                /* UPT versions supported */
    put64(ds, 24, nq > 1 ? 0x2 : 0); /* UPT1_F_RSS */
    put64(ds, 40, (uint64_t)v->qdesc);
    put32(ds, 52, 2 * nq * 256);
    put32(ds, 56, mtu);
    put16(ds, 60, 5);                /* maxNumRxSG */
    ds[62] = (uint8_t)nq;
    ds[63] = (uint8_t)nq;
    ds[80] = 1;                      /* autoMask */
    ds[81] = 1;                      /* one interrupt for everything */
    ds[82] = 0;
    put32(ds, 120, cfg.promisc ? 0x15 : 0x05); /* UCAST | BCAST (| PROMISC) */
    if (nq > 1) {
        put16(rss, 0, 0x3);          /* IPv4, TCP/IPv4 */
        put16(rss, 2, 0x1);          /* Toeplitz */
        put16(rss, 4, 40);
        put16(rss, 6, 32);
        memcpy(rss + 8, rss_key, 40);
        for (unsigned i = 0; i < 32; i++)
            rss[48 + i] = (uint8_t)(i % nq);
        put32(ds, 648, 1);
        put32(ds, 652, 176);
        put64(ds, 656, (uint64_t)rss);
    }

    v->nif = (struct netif){
        .name = "vmxnet",
        .rx_peek = vx_rx_peek,
        .rx_release = vx_rx_release,
        .tx_alloc = vx_tx_alloc,
        .tx_submit = vx_tx_submit,
        .tx_kick = vx_tx_kick,
        .tx_done = vx_tx_done,
        .wait = vx_wait,
        .stats = vx_stats,
        .max_frame = mtu + ETH_HLEN,
    };
    memcpy(v->nif.mac, dev_mac, ETH_ALEN);

    net_await_go(&cfg);
    w32(bar1, VD_DSAL, (uint32_t)(uint64_t)ds);
    w32(bar1, VD_DSAH, (uint32_t)((uint64_t)ds >> 32));
    uint32_t r = command(CMD_ACTIVATE_DEV);
    if (r != 0) {
        uprintf("FAIL: vmxnet: ACTIVATE_DEV answered 0x%x\n", r);
        return 7;
    }
    if (nq > 1) {
        put32(ds, 704, 0x1 | 0x4);   /* hash TCP and UDP over IPv4 with the ports */
        command(CMD_SET_RSS_FIELDS);
    }
    for (unsigned q = 0; q < nq; q++) {
        w32(bar0, PT_RXPROD(q), 0);
        w32(bar0, PT_RXPROD2(q), 0);
    }
    w32(bar0, PT_IMR(0), 0);
    uprintf("vmxnet: activated, %u tx / %u rx queues, rings %u, mtu %u, %s, %s\n", nq, nq, n, mtu,
            use_msix ? "msi-x" : "intx", cfg.promisc ? "promiscuous" : "unicast+broadcast");
    int rc = net_run(&v->nif, &cfg);
    command(CMD_QUIESCE_DEV);
    return (uint64_t)rc;
}

/* ------------------------------------------------------------ main */
static uint64_t pick_region(uint64_t want)
{
    const uint64_t lo = 0x400000;
    if (!start_info || start_info->version < 1 || !start_info->memmap_paddr)
        return mem_ram_bytes() >= lo + want ? lo : 0;
    const struct hvm_memmap_entry *e = (const void *)start_info->memmap_paddr;
    for (uint32_t i = 0; i < start_info->memmap_entries; i++)
        if (e[i].type == 1 && e[i].addr <= lo && e[i].addr + e[i].size >= lo + want)
            return lo;
    return 0;
}

static uint8_t find_capability(const struct pci_dev *d, uint8_t id)
{
    uint8_t p = pci_read8(d->bus, d->dev, d->fn, 0x34);
    for (int hops = 0; p && hops < 48; hops++, p = pci_read8(d->bus, d->dev, d->fn, p + 1))
        if (pci_read8(d->bus, d->dev, d->fn, p) == id)
            return p;
    return 0;
}

int main(void)
{
    cli();
    struct pci_dev d;
    if (!pci_find(VMXNET3_VENDOR, VMXNET3_DEVICE, &d))
        fail(2, "vmxnet: no %04x:%04x on bus 0\n", VMXNET3_VENDOR, VMXNET3_DEVICE);
    struct pci_bar b0, b1, b2;
    pci_bar(&d, 0, &b0);
    pci_bar(&d, 1, &b1);
    pci_bar(&d, 2, &b2);
    if (b0.type != PCI_BAR_MEM32 || b1.type != PCI_BAR_MEM32 || !b0.addr || !b1.addr)
        fail(2, "vmxnet: BAR0/BAR1 are not assigned 32-bit memory BARs\n");
    bar0 = b0.addr;
    bar1 = b1.addr;
    irq = d.irq_line;
    pci_enable(&d, PCI_CMD_MEM | PCI_CMD_MASTER);

    uint32_t vrrs = r32(bar1, VD_VRRS), uvrs = r32(bar1, VD_UVRS);
    if (!(vrrs & 1) || !(uvrs & 1))
        fail(3, "vmxnet: VRRS 0x%x UVRS 0x%x: revision 1 / UPT version 1 not offered\n", vrrs, uvrs);
    w32(bar1, VD_VRRS, 1);
    w32(bar1, VD_UVRS, 1);
    uint32_t macl = r32(bar1, VD_MACL), mach = r32(bar1, VD_MACH);
    for (int i = 0; i < 4; i++)
        dev_mac[i] = (uint8_t)(macl >> (8 * i));
    dev_mac[4] = (uint8_t)mach;
    dev_mac[5] = (uint8_t)(mach >> 8);
    uint32_t link = command(CMD_GET_LINK);
    char m[18];
    printf("vmxnet: %02x:%02x.%u bar0 0x%lx bar1 0x%lx vrrs 0x%x uvrs 0x%x mac %s link %s %u Mbps\n", d.bus,
           d.dev, d.fn, bar0, bar1, vrrs, uvrs, net_fmt_mac(m, dev_mac), link & 1 ? "up" : "down", link >> 16);

    region = pick_region(0x1000000);
    if (!region)
        fail(5, "vmxnet: no RAM at 4-20 MiB for the rings\n");

    net_time_init();
    ksys_init();
    ksys_register(SYS_WAIT, k_wait);

    char intr[8] = "msix";
    net_arg("intr", intr, sizeof intr);
    uint8_t cap = find_capability(&d, 0x11);
    use_msix = strcmp(intr, "intx") != 0 && cap && b2.type == PCI_BAR_MEM32 && b2.addr;
    if (use_msix) {
        uint32_t table = pci_read32(d.bus, d.dev, d.fn, cap + 4);
        if ((table & 7) != 2)
            fail(4, "vmxnet: MSI-X table in BAR%u, expected BAR2\n", table & 7);
        uint64_t entry = b2.addr + (table & ~7u);
        lapic_enable();
        set_int_handler(MSIX_VECTOR, on_msix);
        mmio_write32(entry, (uint32_t)LAPIC_BASE);
        mmio_write32(entry + 4, 0);
        mmio_write32(entry + 8, MSIX_VECTOR);
        mmio_write32(entry + 12, 0);
        pci_write16(d.bus, d.dev, d.fn, cap + 2, 0x8000);
    } else {
        if (d.irq_pin == 0 || irq == 0 || irq == 2 || irq >= 16)
            fail(4, "vmxnet: no usable INTx line (line %u pin %u)\n", irq, d.irq_pin);
        set_int_handler((uint8_t)PIC_VECTOR(irq), on_intx);
        pic_unmask(irq);
    }
    printf("vmxnet: tsc %lu kHz, %s, entering ring 3\n", net_tsc_khz, use_msix ? "msi-x vector 0x50" : "intx");
    return (int)run_user(app, user_stack_top);
}
