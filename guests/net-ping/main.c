/*
 * net-ping: a driver for the AMD PCnet-PCI II (Am79C970A, 1022:2000, VMware's
 * "vlance"), probed like Linux pcnet32, under the shared test roles of
 * runtime/net.c (ping / respond / sniff / flood / sink / info).
 *
 * Kernel mode (emulated on the PVM host, so kept to register work):
 *   PCI scan, I/O + bus master, RESET, CSR0 == STOP, DWIO switch, APROM MAC,
 *   chip id (CSR88/89), BCR20 = 2 (SWSTYLE 2); then calls from ring 3:
 *   START (CSR1/2 = init block, CSR4 = 0x0915, CSR0 = INIT, IDON, CSR0 = STRT|INEA),
 *   KICK (CSR0 = TDMD [| INEA]) and WAIT (re-enable INEA, check, sti;hlt).
 *   The INTx handler acknowledges CSR0 and masks the chip (INEA = 0) until
 *   ring 3 runs out of work and WAITs, NAPI style: no per-frame interrupts
 *   under load.
 * Ring 3 (native): the 32-bit init block, RX/TX descriptor rings and buffers,
 *   and the protocol.
 *
 * Command line: see runtime/net.h (role= ip= peer= count= timeout= arp= ring=).
 */
#include "net.h"

#define PCNET_VENDOR 0x1022
#define PCNET_DEVICE 0x2000

/* DWIO register offsets */
#define PCNET_APROM 0x00
#define PCNET_RDP   0x10
#define PCNET_RAP   0x14
#define PCNET_RESET 0x18 /* not used: a DWIO-mode reset drops back to WIO on QEMU */
#define PCNET_BDP   0x1C
/* WIO (16-bit) offsets, used only until the DWIO switch */
#define PCNET_WIO_RAP   0x12
#define PCNET_WIO_RESET 0x14

#define CSR0_INIT 0x0001
#define CSR0_STRT 0x0002
#define CSR0_STOP 0x0004
#define CSR0_TDMD 0x0008
#define CSR0_TXON 0x0010
#define CSR0_RXON 0x0020
#define CSR0_INEA 0x0040
#define CSR0_INTR 0x0080
#define CSR0_IDON 0x0100
#define CSR0_TINT 0x0200
#define CSR0_RINT 0x0400
#define CSR0_MERR 0x0800
#define CSR0_MISS 0x1000
#define CSR0_BABL 0x4000
#define CSR0_ACK  0x7F00 /* write-1-to-clear bits */

#define DESC_OWN 0x8000
#define DESC_ERR 0x4000
#define DESC_STP 0x0200
#define DESC_ENP 0x0100

#define BUF_SIZE 1536
#define MAX_RING 512

/* ------------------------------------------------------- kernel side */
static uint16_t io;
static unsigned irq;
static unsigned rap = ~0u;  /* cached RAP */
static bool inea;
static volatile uint32_t irqs, irq_csr0_or, misses, merrs, babls;
static uint8_t aprom_mac[ETH_ALEN];
static uint64_t region; /* physical RAM for the rings, picked from the memmap */

static uint32_t csr_read(unsigned r)
{
    if (rap != r) {
        outl(io + PCNET_RAP, r);
        rap = r;
    }
    return inl(io + PCNET_RDP) & 0xFFFF;
}

static void csr_write(unsigned r, uint32_t v)
{
    if (rap != r) {
        outl(io + PCNET_RAP, r);
        rap = r;
    }
    outl(io + PCNET_RDP, v);
}

static uint32_t bcr_read(unsigned r)
{
    outl(io + PCNET_RAP, r);
    rap = r;
    return inl(io + PCNET_BDP) & 0xFFFF;
}

static void bcr_write(unsigned r, uint32_t v)
{
    outl(io + PCNET_RAP, r);
    rap = r;
    outl(io + PCNET_BDP, v);
}

static void pcnet_irq(struct int_frame *f)
{
    (void)f;
    uint32_t csr0 = csr_read(0);
    if (csr0 & CSR0_INTR) {
        /* acknowledge what we saw and mask the chip until ring 3 WAITs */
        csr_write(0, csr0 & CSR0_ACK);
        inea = false;
        irqs++;
        irq_csr0_or |= csr0;
        if (csr0 & CSR0_MISS)
            misses++;
        if (csr0 & CSR0_MERR)
            merrs++;
        if (csr0 & CSR0_BABL)
            babls++;
    }
    pic_eoi(irq);
}

#define SYS_START (KSYS_DRIVER + 0)
#define SYS_KICK  (KSYS_DRIVER + 1)
#define SYS_WAIT  (KSYS_DRIVER + 2)
#define SYS_CSR   (KSYS_DRIVER + 3)

/* a0 = physical address of the init block. Returns CSR0 after STRT, 0 if no IDON. */
static uint64_t k_start(uint64_t a0, uint64_t a1)
{
    (void)a1;
    csr_write(1, (uint32_t)a0 & 0xFFFF);
    csr_write(2, (uint32_t)(a0 >> 16) & 0xFFFF);
    csr_write(4, 0x0915); /* auto-pad TX, DMA+ (as pcnet32) */
    csr_write(0, CSR0_INIT);
    uint32_t csr0 = 0;
    for (int i = 0; i < 10000 && !(csr0 & CSR0_IDON); i++)
        csr0 = csr_read(0);
    if (!(csr0 & CSR0_IDON))
        return 0;
    /* like pcnet32: start without clearing IDON; the IRQ handler acks it */
    csr_write(0, CSR0_STRT | CSR0_INEA);
    inea = true;
    return csr_read(0) | 0x10000;
}

static uint64_t k_kick(uint64_t a0, uint64_t a1)
{
    (void)a0, (void)a1;
    csr_write(0, CSR0_TDMD | (inea ? CSR0_INEA : 0));
    return 0;
}

/* a0/a1: descriptor status words to watch (0 = none). Returns at once if either
 * descriptor is back with the host, else sleeps until the next interrupt. */
static uint64_t k_wait(uint64_t a0, uint64_t a1)
{
    if (!inea) {
        csr_write(0, CSR0_INEA);
        inea = true;
    }
    if (a0 && !(*(volatile uint16_t *)a0 & DESC_OWN))
        return 1;
    if (a1 && !(*(volatile uint16_t *)a1 & DESC_OWN))
        return 1;
    wait_irq();
    return 0;
}

static uint64_t k_csr(uint64_t a0, uint64_t a1)
{
    (void)a1;
    uint32_t v = csr_read((unsigned)a0 & 127);
    csr_read(0); /* leave RAP at 0 */
    return v;
}

/* ------------------------------------------------------- ring-3 side */
struct __attribute__((packed)) init_block {
    uint16_t mode;
    uint16_t tlen_rlen;
    uint8_t padr[6];
    uint16_t reserved;
    uint32_t ladrf[2];
    uint32_t rdra, tdra;
};
struct desc {
    uint32_t base;
    uint16_t bcnt;   /* RX buf_length / TX length: two's complement, top nibble 1s */
    volatile uint16_t status;
    uint32_t misc;   /* RX msg_length / TX error bits */
    uint32_t reserved;
};

struct pcnet {
    struct netif nif;
    struct init_block *ib;
    struct desc *rx, *tx;
    uint8_t *rxbuf, *txbuf;
    unsigned n, mask;
    unsigned rx_head;
    unsigned tx_head, tx_tail; /* reclaim at head, fill at tail (free-running) */
    uint32_t rx_err_first; /* status << 16 | mcnt of the first bad descriptor */
    uint32_t rx_frames, rx_errors, tx_frames, tx_errors, kicks, waits;
};
static struct pcnet pc;

static void rx_give(struct pcnet *p, unsigned i)
{
    p->rx[i].misc = 0;
    p->rx[i].bcnt = (uint16_t)(0xF000 | (-(int)BUF_SIZE & 0x0FFF));
    barrier();
    p->rx[i].status = DESC_OWN;
}

static const uint8_t *pc_rx_peek(struct netif *n, unsigned *len)
{
    struct pcnet *p = (struct pcnet *)n;
    for (;;) {
        struct desc *d = &p->rx[p->rx_head & p->mask];
        uint16_t st = d->status;
        if (st & DESC_OWN)
            return NULL;
        barrier();
        if (!(st & (DESC_ENP | DESC_ERR))) {
            /* QEMU hands the descriptor back (OWN=0, STP) before it writes ENP
             * and MCNT: still being written unless a later frame is already done. */
            if (p->rx[(p->rx_head + 1) & p->mask].status & DESC_OWN)
                return NULL;
            barrier();
            st = d->status;
        }
        unsigned mcnt = d->misc & 0xFFF;
        if ((st & (DESC_ERR | DESC_STP | DESC_ENP)) != (DESC_STP | DESC_ENP) || mcnt < ETH_HLEN + 4 ||
            mcnt > BUF_SIZE) {
            if (!p->rx_errors++)
                p->rx_err_first = (uint32_t)st << 16 | mcnt;
            rx_give(p, p->rx_head & p->mask);
            p->rx_head++;
            continue;
        }
        *len = mcnt - 4; /* without the FCS */
        return p->rxbuf + (size_t)(p->rx_head & p->mask) * BUF_SIZE;
    }
}

static void pc_rx_release(struct netif *n)
{
    struct pcnet *p = (struct pcnet *)n;
    rx_give(p, p->rx_head & p->mask);
    p->rx_head++;
    p->rx_frames++;
}

static void tx_reclaim(struct pcnet *p)
{
    while (p->tx_head != p->tx_tail) {
        struct desc *d = &p->tx[p->tx_head & p->mask];
        uint16_t st = d->status;
        if (st & DESC_OWN)
            break;
        if (st & DESC_ERR)
            p->tx_errors++;
        else
            p->tx_frames++;
        p->tx_head++;
    }
}

static uint8_t *pc_tx_alloc(struct netif *n)
{
    struct pcnet *p = (struct pcnet *)n;
    if (p->tx_tail - p->tx_head == p->n)
        tx_reclaim(p);
    if (p->tx_tail - p->tx_head == p->n)
        return NULL;
    return p->txbuf + (size_t)(p->tx_tail & p->mask) * BUF_SIZE;
}

static void pc_tx_submit(struct netif *n, unsigned len)
{
    struct pcnet *p = (struct pcnet *)n;
    struct desc *d = &p->tx[p->tx_tail & p->mask];
    d->bcnt = (uint16_t)(0xF000 | (-(int)len & 0x0FFF));
    d->misc = 0;
    barrier();
    d->status = DESC_OWN | DESC_STP | DESC_ENP;
    p->tx_tail++;
}

static void pc_tx_kick(struct netif *n)
{
    ((struct pcnet *)n)->kicks++;
    usys(SYS_KICK, 0, 0);
}

static bool pc_tx_done(struct netif *n)
{
    struct pcnet *p = (struct pcnet *)n;
    tx_reclaim(p);
    return p->tx_head == p->tx_tail;
}

static void pc_wait(struct netif *n)
{
    struct pcnet *p = (struct pcnet *)n;
    p->waits++;
    tx_reclaim(p);
    uint64_t txw = p->tx_head != p->tx_tail ? (uint64_t)&p->tx[p->tx_head & p->mask].status : 0;
    usys(SYS_WAIT, (uint64_t)&p->rx[p->rx_head & p->mask].status, txw);
}

static void pc_stats(struct netif *n)
{
    struct pcnet *p = (struct pcnet *)n;
    tx_reclaim(p);
    if (p->rx_errors)
        uprintf("pcnet: first bad RX descriptor: status 0x%04x mcnt %u\n", p->rx_err_first >> 16,
                p->rx_err_first & 0xFFFF);
    uprintf("pcnet: rx %u frames %u errors, tx %u frames %u errors, %u kicks, %u waits, "
            "%u irqs (csr0 bits seen 0x%04x), miss %u merr %u babl %u, missed-frame count %lu\n",
            p->rx_frames, p->rx_errors, p->tx_frames, p->tx_errors, p->kicks, p->waits, irqs,
            irq_csr0_or, misses, merrs, babls, usys(SYS_CSR, 112, 0));
}

static uint64_t app(void)
{
    struct net_config cfg;
    if (!net_parse_config(&cfg))
        return 1;
    struct pcnet *p = &pc;
    unsigned n = 8, lg = 3;
    while (n < cfg.ring && n < MAX_RING)
        n <<= 1, lg++;
    p->n = n;
    p->mask = n - 1;
    /* layout: init block, RX ring, TX ring (16-byte aligned), buffers */
    uint8_t *base = (uint8_t *)region;
    p->ib = (struct init_block *)base;
    p->rx = (struct desc *)(base + 0x100);
    p->tx = p->rx + n;
    p->rxbuf = base + 0x100 + 2 * n * sizeof(struct desc);
    p->rxbuf = (uint8_t *)(((uint64_t)p->rxbuf + 63) & ~63ull);
    p->txbuf = p->rxbuf + (size_t)n * BUF_SIZE;
    memset(base, 0, (size_t)(p->rxbuf - base));
    for (unsigned i = 0; i < n; i++) {
        p->rx[i].base = (uint32_t)(uint64_t)(p->rxbuf + (size_t)i * BUF_SIZE);
        rx_give(p, i);
        p->tx[i].base = (uint32_t)(uint64_t)(p->txbuf + (size_t)i * BUF_SIZE);
        p->tx[i].status = 0; /* host owns */
    }
    p->ib->mode = cfg.promisc ? 0x8000 : 0; /* PROM */
    p->ib->tlen_rlen = (uint16_t)(lg << 12 | lg << 4);
    memcpy(p->ib->padr, aprom_mac, ETH_ALEN);
    p->ib->ladrf[0] = p->ib->ladrf[1] = 0;
    p->ib->rdra = (uint32_t)(uint64_t)p->rx;
    p->ib->tdra = (uint32_t)(uint64_t)p->tx;

    p->nif = (struct netif){
        .name = "pcnet",
        .rx_peek = pc_rx_peek,
        .rx_release = pc_rx_release,
        .tx_alloc = pc_tx_alloc,
        .tx_submit = pc_tx_submit,
        .tx_kick = pc_tx_kick,
        .tx_done = pc_tx_done,
        .wait = pc_wait,
        .stats = pc_stats,
    };
    memcpy(p->nif.mac, aprom_mac, ETH_ALEN);

    net_await_go(&cfg);
    uint64_t csr0 = usys(SYS_START, (uint64_t)p->ib, 0);
    if (!csr0) {
        uprintf("FAIL: pcnet: no IDON after INIT (init block at 0x%lx)\n", (uint64_t)p->ib);
        return 7;
    }
    uint32_t padr[3];
    for (int i = 0; i < 3; i++)
        padr[i] = (uint32_t)usys(SYS_CSR, 12 + (uint64_t)i, 0);
    uint8_t csr_mac[ETH_ALEN] = {(uint8_t)padr[0], (uint8_t)(padr[0] >> 8), (uint8_t)padr[1],
                                 (uint8_t)(padr[1] >> 8), (uint8_t)padr[2], (uint8_t)(padr[2] >> 8)};
    char m[18];
    uprintf("pcnet: started, csr0 0x%04lx, rings %u/%u (%s), padr %s%s\n", csr0 & 0xFFFF, n, n,
            cfg.promisc ? "promiscuous" : "unicast+broadcast", net_fmt_mac(m, csr_mac),
            memcmp(csr_mac, aprom_mac, ETH_ALEN) ? " (differs from APROM!)" : "");
    if ((csr0 & (CSR0_STRT | CSR0_TXON | CSR0_RXON)) != (CSR0_STRT | CSR0_TXON | CSR0_RXON))
        uprintf("pcnet: warning: csr0 0x%04lx does not show STRT|TXON|RXON\n", csr0 & 0xFFFF);
    return (uint64_t)net_run(&p->nif, &cfg);
}

/* ------------------------------------------------------------ main */
static uint64_t pick_region(uint64_t want)
{
    /* 4 MiB up: above the image, its stacks and the boot data */
    const uint64_t lo = 0x400000;
    if (!start_info || start_info->version < 1 || !start_info->memmap_paddr)
        return mem_ram_bytes() >= lo + want ? lo : 0;
    const struct hvm_memmap_entry *e = (const void *)start_info->memmap_paddr;
    for (uint32_t i = 0; i < start_info->memmap_entries; i++)
        if (e[i].type == 1 && e[i].addr <= lo && e[i].addr + e[i].size >= lo + want)
            return lo;
    return 0;
}

int main(void)
{
    cli();
    struct pci_dev d;
    if (!pci_find(PCNET_VENDOR, PCNET_DEVICE, &d))
        fail(2, "pcnet: no %04x:%04x on bus 0\n", PCNET_VENDOR, PCNET_DEVICE);
    struct pci_bar bar;
    pci_bar(&d, 0, &bar);
    if (bar.type != PCI_BAR_IO || !bar.addr)
        fail(2, "pcnet: BAR0 is not an assigned I/O BAR\n");
    io = (uint16_t)bar.addr;
    irq = d.irq_line;
    pci_enable(&d, PCI_CMD_IO | PCI_CMD_MASTER);

    /* Reset in 16-bit mode (the chip comes out of H_RESET in WIO), probe CSR0
     * and RAP, then switch to 32-bit I/O with a dword write to RDP. */
    (void)inw(io + PCNET_WIO_RESET);
    outw(io + PCNET_WIO_RAP, 0);
    uint16_t csr0 = inw(io + PCNET_RDP);
    outw(io + PCNET_WIO_RAP, 88);
    uint16_t rap88 = inw(io + PCNET_WIO_RAP);
    if (csr0 != CSR0_STOP || rap88 != 88)
        fail(3, "pcnet: after reset CSR0 = 0x%04x (want 0x0004), RAP readback %u (want 88)\n", csr0, rap88);
    outl(io + PCNET_RDP, 0); /* -> DWIO (QEMU's S_RESET would clear it again) */
    rap = ~0u;
    uint32_t c0 = csr_read(0);
    if (c0 != CSR0_STOP)
        fail(3, "pcnet: in DWIO mode CSR0 = 0x%04x (want 0x0004)\n", c0);
    uint32_t chip = csr_read(88) | csr_read(89) << 16;

    /* APROM in DWIO mode: aligned dword reads (QEMU decodes nothing else) */
    uint32_t w0 = inl(io + PCNET_APROM), w1 = inl(io + PCNET_APROM + 4), w3 = inl(io + PCNET_APROM + 12);
    for (int i = 0; i < 4; i++)
        aprom_mac[i] = (uint8_t)(w0 >> (8 * i));
    aprom_mac[4] = (uint8_t)w1;
    aprom_mac[5] = (uint8_t)(w1 >> 8);
    uint8_t sig[2] = {(uint8_t)(w3 >> 16), (uint8_t)(w3 >> 24)};

    bcr_write(20, 2); /* SWSTYLE 2: 32-bit descriptors and init block */
    uint32_t bcr20 = bcr_read(20);
    csr_read(0);
    char m[18];
    printf("pcnet: %02x:%02x.%u io 0x%x irq %u chip 0x%04x (csr88 0x%04x) bcr20 0x%04x\n", d.bus, d.dev,
           d.fn, io, irq, (chip >> 12) & 0xFFFF, chip & 0xFFFF, bcr20);
    printf("pcnet: mac %s aprom signature %02x%02x%s\n", net_fmt_mac(m, aprom_mac), sig[0], sig[1],
           sig[0] == 0x57 && sig[1] == 0x57 ? "" : " (expected 5757)");
    if ((bcr20 & 0xFF) != 2)
        fail(3, "pcnet: BCR20 reads 0x%04x after writing 2\n", bcr20);
    if (d.irq_pin == 0 || irq == 0 || irq == 2 || irq >= 16)
        fail(4, "pcnet: no usable INTx line (line %u pin %u)\n", irq, d.irq_pin);

    region = pick_region(0x200000);
    if (!region)
        fail(5, "pcnet: no RAM at 4-6 MiB for the rings\n");

    net_time_init();
    ksys_init();
    ksys_register(SYS_START, k_start);
    ksys_register(SYS_KICK, k_kick);
    ksys_register(SYS_WAIT, k_wait);
    ksys_register(SYS_CSR, k_csr);
    set_int_handler((uint8_t)PIC_VECTOR(irq), pcnet_irq);
    pic_unmask(irq);
    printf("pcnet: tsc %lu kHz, irq %u unmasked, entering ring 3\n", net_tsc_khz, irq);
    return (int)run_user(app, user_stack_top);
}
