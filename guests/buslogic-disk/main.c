/*
 * buslogic-disk: a driver for the BusLogic BT-958 MultiMaster (104B:1040, ESX's
 * "buslogic" SCSI adapter) that probes it in the Linux BusLogic driver's order, then
 * writes, reads back and verifies a pattern on every target.
 *
 * Kernel mode (emulated on the PVM host, so kept to register work): PCI, the ISA port
 * disable and the probe commands, hard reset, configuration and mailbox setup (the
 * Linux order and reply lengths), one Test CMDC Interrupt through the 8259 (INTx).
 * Ring 3 (native): the SCSI commands through 32-bit mailboxes and CCBs (kicks and
 * interrupt acknowledges through the BAR1 memory window), the pattern generation and
 * the comparison.
 *
 * Every 104B:1040 on bus 0 (up to 4) is driven, one after the other.
 * Command line: mib=<MiB per target, default 4>, qd=<CCBs in flight, 1-8, default 4>,
 * bench=<ops>: before the pattern test, time 1 MiB sequential writes and reads over
 * the same range and <ops> 4 KiB random reads and writes (qd in flight), and print
 * "buslogic<A>: bench target T: ..." (the pattern test then overwrites what it wrote);
 * hold=<seconds>: after writing the first disk, wait that many RTC seconds before reading
 * it back (a window for a suspend test; announced as "buslogic0: target T holding").
 * Output: "buslogic<A>: ..." lines per adapter A; "buslogic<A>: target T verified N MiB"
 * per disk, then "buslogic: all N targets ok on M adapters"; exit 0 on success.
 *
 * The pattern (the integration test recomputes it from the image files): the 64-bit
 * little-endian word at byte offset o of target t is pattern_word(ad * 16 + t, o / 8).
 */
#include "net.h" /* net_time_init, net_us */
#include "rt.h"

#define BL_VENDOR 0x104B
#define BL_DEVICE 0x1040

/* registers */
#define BL_CONTROL 0 /* write */
#define BL_STATUS  0 /* read */
#define BL_COMMAND 1 /* write: command/parameter */
#define BL_DATAIN  1 /* read */
#define BL_INTR    2 /* read */
#define BL_GEOM    3 /* read */

#define CTL_HRST 0x80
#define CTL_IRST 0x20

#define ST_DACT   0x80
#define ST_DFAIL  0x40
#define ST_INREQ  0x20
#define ST_HARDY  0x10
#define ST_CPRBSY 0x08
#define ST_DIRRDY 0x04
#define ST_RSVD   0x02
#define ST_CMDINV 0x01

#define INT_INTV 0x80
#define INT_CMDC 0x04
#define INT_IMBL 0x01

#define MBOX_COUNT 211 /* what Linux uses with strict round robin */
#define CHUNK (1u << 20)
#define SG_PIECE (64u << 10)
#define SG_STRIDE (SG_PIECE + 4096) /* pieces are not contiguous: the adapter must walk the list */
#define SG_COUNT (CHUNK / SG_PIECE)

#define MAX_ADAPTERS 4
static struct pci_dev adapters[MAX_ADAPTERS];
static int nadapters;
static unsigned ad;  /* the adapter being driven: its index, I/O base, IRQ, mailboxes */
static uint16_t io;
static unsigned irq;
static uint64_t mbox_base;
static uint16_t adapter_ports[MAX_ADAPTERS];
static uint64_t adapter_mmio[MAX_ADAPTERS];
/* Ring 3 kicks and acknowledges through BAR1 (the same registers as memory): a ring-3
 * port access is a #GP the kernel emulates (slow on a PVM host), an MMIO access is not. */
static uint64_t mmio;
static uint32_t next_out, next_in; /* round-robin positions in its mailboxes */
static volatile uint32_t irqs;
static uint8_t last_int;
static uint8_t mailbox_int_or; /* interrupt register bits seen while reaping */

/* physical layout (identity-mapped; ring 3 may touch it all): per CCB slot a CCB, an
 * S/G list, sense space, a write buffer (S/G pieces) and a read buffer */
#define QD_MAX       8
#define REGION       0x400000ull
#define MBOX_AREA(a) (REGION + 0x8000 + (uint64_t)(a) * 0x1000)
#define SLOT_CCB(i)  (REGION + 0x1000 + (uint64_t)(i) * 0x100)
#define SLOT_SG(i)   (REGION + 0x2000 + (uint64_t)(i) * 0x100)
#define SLOT_SENSE(i) (REGION + 0x3000 + (uint64_t)(i) * 0x20)
#define SMALL_BUF    (REGION + 0x4000)
#define SLOT_WBUF(i) (REGION + 0x100000 + (uint64_t)(i) * 0x110000)
#define SLOT_RBUF(i) (REGION + 0xA00000 + (uint64_t)(i) * CHUNK)
#define REGION_SIZE  0x1200000ull

/* printf with the adapter's tag: "buslogic<index>: " */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;
    printf("buslogic%u: ", ad);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------- blogic_cmd */
/* The Linux driver's command protocol: wait ready, opcode, parameters (stop early on
 * CMDC or data-in), reply bytes while DIRRDY until CMDC, interrupt reset. Returns the
 * reply byte count, -1 for Command Invalid, -2 on a timeout. */
static int bl_cmd(uint8_t op, const uint8_t *param, int plen, uint8_t *reply, int rlen)
{
    uint8_t st = 0, in;
    int n = 0, t;
    for (t = 0; t < 100000; t++) {
        st = inb(io + BL_STATUS);
        if ((st & ST_HARDY) && !(st & ST_CPRBSY))
            break;
    }
    if (t == 100000)
        return -2;
    outb(io + BL_COMMAND, op);
    for (t = 0; plen > 0 && t < 100000; t++) {
        in = inb(io + BL_INTR);
        st = inb(io + BL_STATUS);
        if ((in & INT_CMDC) || (st & ST_DIRRDY))
            break;
        if (st & ST_CPRBSY)
            continue;
        outb(io + BL_COMMAND, *param++);
        plen--;
    }
    if (op == 0x95) /* Modify I/O Address: no Command Complete */
        return (inb(io + BL_STATUS) & ST_CMDINV) ? -1 : 0;
    for (t = 0; t < 1000000; t++) {
        in = inb(io + BL_INTR);
        st = inb(io + BL_STATUS);
        if (in & INT_CMDC)
            break;
        if (st & ST_DIRRDY) {
            uint8_t b = inb(io + BL_DATAIN);
            if (n < rlen)
                reply[n] = b;
            n++;
        }
        if (op == 0x91 && (st & ST_HARDY))
            break;
    }
    if (t == 1000000)
        return -2;
    outb(io + BL_CONTROL, CTL_IRST);
    if (st & ST_CMDINV)
        return -1;
    if (plen > 0)
        return -1;
    return n;
}

static void need(const char *what, int got, int want)
{
    if (got != want)
        fail(3, "buslogic: %s: got %d reply bytes, want %d\n", what, got, want);
}

static void bl_irq(struct int_frame *f)
{
    (void)f;
    uint8_t in = inb(io + BL_INTR);
    if (in & INT_INTV) {
        last_int = in;
        outb(io + BL_CONTROL, CTL_IRST);
        irqs++;
    }
    pic_eoi(irq);
}

/* -------------------------------------------------- ring 3: SCSI I/O */
/* Makes adapter `a` the one `io`, `irq` and the mailboxes refer to (its mailbox
 * positions start over: the kernel side left them at 0). */
static void select_adapter(int a)
{
    ad = (unsigned)a;
    io = adapter_ports[a];
    mmio = adapter_mmio[a];
    irq = adapters[a].irq_line;
    mbox_base = MBOX_AREA(a);
    next_out = next_in = 0;
}

static uint64_t mib = 4;
static uint64_t hold;
static uint64_t bench_ops;
static bool held;
static unsigned qd = 4;

struct ccb {
    uint8_t opcode, dir, cdblen, senselen;
    uint32_t datalen, data;
    uint8_t r12, r13, host_status, target_status, target, lun;
    uint8_t cdb[12];
    uint8_t r30, r31;
    uint32_t r32, sense;
} __attribute__((packed));

struct result {
    uint8_t completion, host_status, target_status;
    uint8_t sense_key, asc;
};

static void ccb_fill(unsigned slot, uint8_t target, const uint8_t *cdb, int cdblen, uint8_t dir, uint32_t data,
                     uint32_t datalen, bool sg)
{
    volatile struct ccb *c = (volatile struct ccb *)SLOT_CCB(slot);
    memset((void *)c, 0, sizeof(*c));
    c->opcode = sg ? 0x02 : 0x00;
    c->dir = (uint8_t)(dir << 3);
    c->cdblen = (uint8_t)cdblen;
    c->senselen = 18;
    c->datalen = datalen;
    c->data = data;
    c->target = target;
    for (int i = 0; i < cdblen; i++)
        c->cdb[i] = cdb[i];
    c->sense = (uint32_t)SLOT_SENSE(slot);
}

/* blogic_write_outbox: the CCB pointer, then the action code, then the kick. */
static void post(unsigned slot)
{
    volatile uint8_t *out = (volatile uint8_t *)(mbox_base + 8 * next_out);
    if (out[7] != 0)
        fail(6, "buslogic: outgoing mailbox %u still busy\n", next_out);
    *(volatile uint32_t *)out = (uint32_t)SLOT_CCB(slot);
    barrier();
    out[7] = 1; /* start */
    next_out = (next_out + 1) % MBOX_COUNT;
    mmio_write8(mmio + BL_COMMAND, 0x02);
}

/* Waits for the next incoming mailbox (the adapter's interrupt stays masked at the
 * 8259 while ring 3 runs), frees it, resets the interrupt; returns the CCB's slot. */
static unsigned reap(struct result *r)
{
    volatile uint8_t *inbox = (volatile uint8_t *)(mbox_base + 8 * MBOX_COUNT + 8 * next_in);
    uint64_t spins = 0;
    while (inbox[7] == 0) {
        pause();
        if (++spins == 4000000000ull)
            fail(6, "buslogic: no completion in incoming mailbox %u\n", next_in);
    }
    uint32_t ccb = *(volatile uint32_t *)inbox;
    if (ccb < SLOT_CCB(0) || ccb >= SLOT_CCB(QD_MAX) || (ccb - SLOT_CCB(0)) % 0x100)
        fail(6, "buslogic: incoming mailbox names CCB 0x%x\n", ccb);
    unsigned slot = (unsigned)((ccb - SLOT_CCB(0)) / 0x100);
    volatile struct ccb *c = (volatile struct ccb *)SLOT_CCB(slot);
    *r = (struct result){inbox[7], inbox[4], inbox[5], 0, 0};
    if (r->host_status != c->host_status || r->target_status != c->target_status)
        fail(6, "buslogic: CCB statuses %02x/%02x differ from the mailbox's\n", c->host_status, c->target_status);
    mailbox_int_or |= mmio_read8(mmio + BL_INTR);
    inbox[7] = 0;
    next_in = (next_in + 1) % MBOX_COUNT;
    mmio_write8(mmio + BL_CONTROL, CTL_IRST);
    if (r->completion == 4 && r->target_status == 2) {
        volatile uint8_t *sense = (volatile uint8_t *)SLOT_SENSE(slot);
        r->sense_key = sense[2] & 0x0F;
        r->asc = sense[12];
    }
    return slot;
}

/* One command, nothing else in flight. */
static struct result scsi(uint8_t target, const uint8_t *cdb, int cdblen, uint8_t dir, uint32_t data,
                          uint32_t datalen, bool sg)
{
    struct result r;
    ccb_fill(0, target, cdb, cdblen, dir, data, datalen, sg);
    post(0);
    if (reap(&r) != 0)
        fail(6, "buslogic: completion for an idle CCB\n");
    return r;
}

/* `target` is adapter * 16 + SCSI id. */
static uint64_t pattern_word(unsigned target, uint64_t index)
{
    uint64_t z = index * 0x9E3779B97F4A7C15ull + ((uint64_t)target << 56) + 0x42;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t blocks)
{
    memset(cdb, 0, 10);
    cdb[0] = op;
    cdb[2] = (uint8_t)(lba >> 24);
    cdb[3] = (uint8_t)(lba >> 16);
    cdb[4] = (uint8_t)(lba >> 8);
    cdb[5] = (uint8_t)lba;
    cdb[7] = (uint8_t)(blocks >> 8);
    cdb[8] = (uint8_t)blocks;
}

/* `count` commands of `blocks` blocks each (WRITE(10) or READ(10) by `op`), qd in flight,
 * at LBAs from `lba(i)`, into or from the slots' read buffers; false on an error. */
static bool run_queue(unsigned t, uint8_t op, uint64_t count, uint16_t blocks, uint32_t (*lba)(uint64_t))
{
    bool busy[QD_MAX] = {false};
    unsigned inflight = 0;
    uint64_t issued = 0, done = 0;
    uint8_t cdb[10];
    struct result r;
    while (done < count) {
        while (issued < count && inflight < qd) {
            unsigned s = 0;
            while (busy[s])
                s++;
            rw10(cdb, op, lba(issued++), blocks);
            ccb_fill(s, (uint8_t)t, cdb, 10, op == 0x2A ? 2 : 1, (uint32_t)SLOT_RBUF(s), blocks * 512u, false);
            busy[s] = true;
            inflight++;
            post(s);
        }
        unsigned s = reap(&r);
        busy[s] = false;
        inflight--;
        done++;
        if (r.completion != 1) {
            say("bench target %u: %s failed, host %02x target %02x\n", t, op == 0x2A ? "WRITE" : "READ",
                r.host_status, r.target_status);
            return false;
        }
    }
    return true;
}

static uint64_t rand_state = 0x2545F4914F6CDD1Dull;
static uint32_t sequential_lba(uint64_t i) { return (uint32_t)(i * (CHUNK / 512)); }
static uint32_t random_lba(uint64_t i)
{
    (void)i;
    rand_state ^= rand_state << 13;
    rand_state ^= rand_state >> 7;
    rand_state ^= rand_state << 17;
    return (uint32_t)(rand_state % ((mib << 20) / 4096)) * 8;
}

static uint64_t per_second(uint64_t n, uint64_t us) { return us ? n * 1000000 / us : 0; }

static bool bench(unsigned t)
{
    uint64_t chunks = (mib << 20) / CHUNK;
    uint64_t t0 = net_us();
    if (!run_queue(t, 0x2A, chunks, CHUNK / 512, sequential_lba))
        return false;
    uint64_t t1 = net_us();
    if (!run_queue(t, 0x28, chunks, CHUNK / 512, sequential_lba))
        return false;
    uint64_t t2 = net_us();
    if (!run_queue(t, 0x28, bench_ops, 8, random_lba))
        return false;
    uint64_t t3 = net_us();
    if (!run_queue(t, 0x2A, bench_ops, 8, random_lba))
        return false;
    uint64_t t4 = net_us();
    say("bench target %u: 1 MiB sequential write %lu MB/s read %lu MB/s; 4 KiB random read %lu IOPS write %lu IOPS "
        "(%u in flight)\n",
        t, per_second(mib << 20, t1 - t0) / 1000000, per_second(mib << 20, t2 - t1) / 1000000,
        per_second(bench_ops, t3 - t2), per_second(bench_ops, t4 - t3), qd);
    return true;
}

static bool disk_test(unsigned t)
{
    uint8_t cdb[10];
    struct result r;
    /* TEST UNIT READY until the reset's UNIT ATTENTION is reported. */
    for (int i = 0;; i++) {
        uint8_t tur[6] = {0};
        r = scsi((uint8_t)t, tur, 6, 3, 0, 0, false);
        if (r.completion == 1)
            break;
        if (i == 3 || r.sense_key != 6) {
            say("target %u TEST UNIT READY: completion %u host %02x target %02x sense %x/%02x\n", t,
                   r.completion, r.host_status, r.target_status, r.sense_key, r.asc);
            return false;
        }
        say("target %u unit attention (asc %02x), retrying\n", t, r.asc);
    }
    uint8_t rc10[10] = {0x25};
    volatile uint8_t *cap = (volatile uint8_t *)SMALL_BUF;
    r = scsi((uint8_t)t, rc10, 10, 1, (uint32_t)SMALL_BUF, 8, false);
    if (r.completion != 1) {
        say("target %u READ CAPACITY failed (host %02x)\n", t, r.host_status);
        return false;
    }
    uint64_t blocks = ((uint64_t)cap[0] << 24 | cap[1] << 16 | cap[2] << 8 | cap[3]) + 1;
    uint32_t bsize = (uint32_t)cap[4] << 24 | cap[5] << 16 | cap[6] << 8 | cap[7];
    say("target %u capacity %lu blocks of %u bytes\n", t, blocks, bsize);
    if (bsize != 512 || blocks * 512 < mib << 20) {
        say("target %u is smaller than %lu MiB\n", t, mib);
        return false;
    }
    if (bench_ops && !bench(t))
        return false;
    /* Writes: qd CCBs in flight, each with a SG_COUNT-entry S/G list over its own
     * write buffer (pieces SG_STRIDE apart), completions in whatever order they come. */
    uint64_t chunks = (mib << 20) / CHUNK;
    uint64_t slot_chunk[QD_MAX];
    bool busy[QD_MAX] = {false};
    unsigned inflight = 0;
    uint64_t issued = 0, done = 0;
    while (done < chunks) {
        while (issued < chunks && inflight < qd) {
            unsigned s = 0;
            while (busy[s])
                s++;
            volatile uint32_t *sg = (volatile uint32_t *)SLOT_SG(s);
            uint64_t word = issued * (CHUNK / 8);
            for (unsigned i = 0; i < SG_COUNT; i++) {
                uint64_t *p = (uint64_t *)(SLOT_WBUF(s) + (uint64_t)i * SG_STRIDE);
                for (unsigned k = 0; k < SG_PIECE / 8; k++)
                    p[k] = pattern_word(ad * 16 + t, word++);
                sg[2 * i] = SG_PIECE;
                sg[2 * i + 1] = (uint32_t)(SLOT_WBUF(s) + (uint64_t)i * SG_STRIDE);
            }
            rw10(cdb, 0x2A, (uint32_t)(issued * (CHUNK / 512)), CHUNK / 512);
            ccb_fill(s, (uint8_t)t, cdb, 10, 2, (uint32_t)SLOT_SG(s), SG_COUNT * 8, true);
            busy[s] = true;
            slot_chunk[s] = issued++;
            inflight++;
            post(s);
        }
        unsigned s = reap(&r);
        if (!busy[s])
            fail(6, "buslogic: completion for idle slot %u\n", s);
        busy[s] = false;
        inflight--;
        done++;
        if (r.completion != 1) {
            say("target %u WRITE chunk %lu: completion %u host %02x target %02x sense %x/%02x\n", t,
                   slot_chunk[s], r.completion, r.host_status, r.target_status, r.sense_key, r.asc);
            return false;
        }
    }
    say("target %u wrote %lu MiB (%u in flight)\n", t, mib, qd);
    if (hold && !held) {
        held = true;
        say("target %u holding %lu s\n", t, hold);
        int last = -1;
        for (uint64_t ticks = 0; ticks < hold;) {
            int now = rtc_seconds();
            if (now >= 0 && now != last) {
                if (last >= 0)
                    ticks++;
                last = now;
            }
            pause();
        }
    }
    /* Reads: one buffer per CCB, unchecked direction as Linux sends most commands (the
     * CDB decides), verified as each completes. */
    issued = done = 0;
    while (done < chunks) {
        while (issued < chunks && inflight < qd) {
            unsigned s = 0;
            while (busy[s])
                s++;
            memset((void *)SLOT_RBUF(s), 0xE5, CHUNK);
            rw10(cdb, 0x28, (uint32_t)(issued * (CHUNK / 512)), CHUNK / 512);
            ccb_fill(s, (uint8_t)t, cdb, 10, 0, (uint32_t)SLOT_RBUF(s), CHUNK, false);
            busy[s] = true;
            slot_chunk[s] = issued++;
            inflight++;
            post(s);
        }
        unsigned s = reap(&r);
        if (!busy[s])
            fail(6, "buslogic: completion for idle slot %u\n", s);
        busy[s] = false;
        inflight--;
        done++;
        if (r.completion != 1) {
            say("target %u READ chunk %lu: completion %u host %02x\n", t, slot_chunk[s], r.completion,
                   r.host_status);
            return false;
        }
        const uint64_t *p = (const uint64_t *)SLOT_RBUF(s);
        uint64_t word = slot_chunk[s] * (CHUNK / 8);
        for (unsigned k = 0; k < CHUNK / 8; k++, word++) {
            if (p[k] != pattern_word(ad * 16 + t, word)) {
                say("target %u mismatch at byte %lu: %016lx, want %016lx\n", t, word * 8, p[k],
                       pattern_word(ad * 16 + t, word));
                return false;
            }
        }
    }
    say("target %u verified %lu MiB\n", t, mib);
    return true;
}

/* The adapter `ad`: INQUIRY on each id but the adapter's (as scsi_scan_host does),
 * then the disk test on every direct-access target. Returns the disks that passed, -1
 * when one failed. */
static int adapter_io(void)
{
    uint8_t targets[16];
    int ntargets = 0;
    unsigned found = 0;
    for (unsigned t = 0; t < 16; t++) {
        if (t == 7)
            continue;
        uint8_t inq[6] = {0x12, 0, 0, 0, 36, 0};
        memset((void *)SMALL_BUF, 0, 64);
        struct result r = scsi((uint8_t)t, inq, 6, 0, (uint32_t)SMALL_BUF, 36, false);
        if (r.completion == 4 && r.host_status == 0x11)
            continue; /* selection timeout: nobody there */
        if (r.completion != 1)
            fail(7, "buslogic: INQUIRY target %u: completion %u host %02x\n", t, r.completion, r.host_status);
        const volatile uint8_t *d = (const volatile uint8_t *)SMALL_BUF;
        char vendor[9], product[17];
        for (int i = 0; i < 8; i++)
            vendor[i] = (char)d[8 + i];
        for (int i = 0; i < 16; i++)
            product[i] = (char)d[16 + i];
        vendor[8] = product[16] = 0;
        say("target %u type %u \"%s\" \"%s\"\n", t, d[0] & 0x1F, vendor, product);
        if ((d[0] & 0x1F) == 0 && (d[0] >> 5) == 0)
            targets[ntargets++] = (uint8_t)t;
        found |= 1u << t;
    }
    say("INQUIRY found targets 0x%04x\n", found);
    for (int i = 0; i < ntargets; i++)
        if (!disk_test(targets[i]))
            return -1;
    return ntargets;
}

static uint64_t io_main(void)
{
    int disks = 0;
    for (int a = 0; a < nadapters; a++) {
        select_adapter(a);
        int n = adapter_io();
        if (n < 0)
            return 8;
        disks += n;
    }
    if (disks == 0)
        return 8;
    printf("buslogic: all %d targets ok on %d adapter%s (interrupt bits seen with completions 0x%02x)\n", disks,
           nadapters, nadapters == 1 ? "" : "s", mailbox_int_or);
    return 0;
}

/* ------------------------------------------------------ kernel side */
static void collect(const struct pci_dev *d, void *ctx)
{
    (void)ctx;
    if (d->vendor == BL_VENDOR && d->device == BL_DEVICE && nadapters < MAX_ADAPTERS)
        adapters[nadapters++] = *d;
}

/* The Linux driver's probe, hard reset, configuration, mailbox setup and target
 * inquiry for adapter `ad`, then one Test CMDC Interrupt through the 8259. */
static void init_adapter(const struct pci_dev *d)
{
    struct pci_bar bar0, bar1;
    pci_bar(d, 0, &bar0);
    pci_bar(d, 1, &bar1);
    /* blogic_init_mm_probeinfo's checks */
    if (bar0.type != PCI_BAR_IO || !bar0.addr)
        fail(2, "buslogic: BAR0 is not an I/O BAR\n");
    if (bar1.type != PCI_BAR_MEM32 && bar1.type != PCI_BAR_MEM64)
        fail(2, "buslogic: BAR1 is not a memory BAR\n");
    io = (uint16_t)bar0.addr;
    adapter_ports[ad] = io;
    adapter_mmio[ad] = bar1.addr;
    irq = d->irq_line;
    mbox_base = MBOX_AREA(ad);
    if (d->irq_pin == 0 || irq == 0 || irq == 2 || irq >= 16)
        fail(2, "buslogic: no usable INTx line (line %u pin %u)\n", irq, d->irq_pin);
    pci_enable(d, PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER);
    say("%02x:%02x.%u io 0x%x mem 0x%lx irq %u\n", d->bus, d->dev, d->fn, io, bar1.addr, irq);

    /* blogic_init_mm_probeinfo: PCI information, ISA port off, AutoSCSI byte 45, board id. */
    uint8_t r[64];
    outb(io + BL_CONTROL, CTL_IRST);
    need("INQUIRE PCI HOST ADAPTER INFORMATION", bl_cmd(0x86, NULL, 0, r, 4), 4);
    uint8_t isa = r[0];
    bool isa_was_330 = inb(0x330) == inb(io + BL_STATUS);
    uint8_t off = 6;
    if (bl_cmd(0x95, &off, 1, NULL, 0) != 0)
        fail(3, "buslogic: MODIFY I/O ADDRESS refused\n");
    bool isa_off = inb(0x330) == 0xFF;
    uint8_t fetch45[2] = {64 + 45, 1};
    need("FETCH LOCAL RAM byte 45", bl_cmd(0x91, fetch45, 2, r, 1), 1);
    need("INQUIRE BOARD ID", bl_cmd(0x04, NULL, 0, r, 4), 4);
    say("isa port code %u (0x330 %s, after disable %s)\n", isa, isa_was_330 ? "decoded" : "silent",
           isa_off ? "silent" : "still decoded");

    /* blogic_probe */
    uint8_t st = inb(io + BL_STATUS), in = inb(io + BL_INTR), geo = inb(io + BL_GEOM);
    if (st == 0 || (st & (ST_DACT | ST_CPRBSY | ST_RSVD | ST_CMDINV)) || (in & 0x70) || geo == 0xFF)
        fail(3, "buslogic: probe: status %02x interrupt %02x geometry %02x\n", st, in, geo);
    /* blogic_hwreset(hard) */
    outb(io + BL_CONTROL, CTL_HRST);
    int t;
    for (t = 0; t < 100000 && !(inb(io + BL_STATUS) & ST_DACT); t++)
        ;
    if (t == 100000)
        fail(3, "buslogic: hard reset: no diagnostic active\n");
    for (t = 0; t < 100000 && (inb(io + BL_STATUS) & ST_DACT); t++)
        ;
    st = inb(io + BL_STATUS);
    if ((st & ST_DFAIL) || !(st & ST_HARDY))
        fail(3, "buslogic: hard reset: status %02x\n", st);
    /* blogic_checkadapter */
    uint8_t len = 14;
    need("INQUIRE EXTENDED SETUP INFORMATION", bl_cmd(0x8D, &len, 1, r, 14), 14);
    /* blogic_rdconfig */
    uint8_t id[4], cfg[3], ext[14], model[5], d3, letter;
    need("INQUIRE BOARD ID", bl_cmd(0x04, NULL, 0, id, 4), 4);
    need("INQUIRE CONFIGURATION", bl_cmd(0x0B, NULL, 0, cfg, 3), 3);
    len = 34;
    need("INQUIRE SETUP INFORMATION", bl_cmd(0x0D, &len, 1, r, 34), 34);
    len = 14;
    need("INQUIRE EXTENDED SETUP INFORMATION", bl_cmd(0x8D, &len, 1, ext, 14), 14);
    need("INQUIRE FIRMWARE 3RD DIGIT", bl_cmd(0x84, NULL, 0, &d3, 1), 1);
    len = 5;
    need("INQUIRE HOST ADAPTER MODEL NUMBER", bl_cmd(0x8B, &len, 1, model, 5), 5);
    need("INQUIRE FIRMWARE VERSION LETTER", bl_cmd(0x85, NULL, 0, &letter, 1), 1);
    need("INQUIRE PCI HOST ADAPTER INFORMATION", bl_cmd(0x86, NULL, 0, r, 4), 4);
    uint8_t fetch[2] = {64, 64};
    need("FETCH HOST ADAPTER LOCAL RAM", bl_cmd(0x91, fetch, 2, r, 64), 64);
    char name[8] = "BT-";
    for (int i = 0; i < 4 && model[i] != ' ' && model[i]; i++)
        name[3 + i] = (char)model[i], name[4 + i] = 0;
    say("model %s firmware %c.%c%c%c id %u bus '%c' sg limit %u wide %u\n", name, id[2], id[3], d3,
           letter, cfg[2] & 0x0F, ext[0], ext[2] | ext[3] << 8, ext[13] & 1);
    if (id[2] != '5' || name[3] != '9')
        fail(3, "buslogic: not a BT-9xx with firmware 5.x\n");
    /* blogic_initadapter */
    memset((void *)mbox_base, 0, MBOX_COUNT * 16);
    next_out = next_in = 0;
    uint32_t base = (uint32_t)mbox_base;
    uint8_t mb[5] = {MBOX_COUNT, (uint8_t)base, (uint8_t)(base >> 8), (uint8_t)(base >> 16), (uint8_t)(base >> 24)};
    if (bl_cmd(0x81, mb, 5, NULL, 0) < 0)
        fail(3, "buslogic: INITIALIZE EXTENDED MAILBOX failed\n");
    uint8_t one = 1;
    if (bl_cmd(0x8F, &one, 1, NULL, 0) < 0)
        fail(3, "buslogic: ENABLE STRICT ROUND ROBIN failed\n");
    if (bl_cmd(0x96, &one, 1, NULL, 0) < 0)
        fail(3, "buslogic: SET CCB FORMAT failed\n");
    /* blogic_inquiry (firmware >= 4.25) */
    uint8_t devs[2];
    need("INQUIRE TARGET DEVICES", bl_cmd(0x24, NULL, 0, devs, 2), 2);
    len = 34;
    need("INQUIRE SETUP INFORMATION", bl_cmd(0x0D, &len, 1, r, 34), 34);
    len = 16;
    need("INQUIRE SYNCHRONOUS PERIOD", bl_cmd(0x8C, &len, 1, r, 16), 16);
    if (bl_cmd(0x99, NULL, 0, NULL, 0) != -1)
        fail(3, "buslogic: opcode 0x99 was not refused as Command Invalid\n");
    say("mailboxes %u at 0x%x, target devices 0x%04x\n", MBOX_COUNT, base, devs[0] | devs[1] << 8);

    /* INTx: a Test CMDC Interrupt through the 8259. */
    irqs = 0;
    set_int_handler((uint8_t)PIC_VECTOR(irq), bl_irq);
    pic_unmask(irq);
    outb(io + BL_COMMAND, 0x00);
    sti();
    for (t = 0; t < 1000000 && irqs == 0; t++)
        pause();
    cli();
    pic_mask(irq);
    if (irqs == 0)
        fail(4, "buslogic: no interrupt for Test CMDC Interrupt\n");
    say("interrupt %u seen, register 0x%02x\n", irq, last_int);
}

/* ------------------------------------------------------------ main */
int main(void)
{
    cli();
    mib = cmdline_u64("mib", 4);
    qd = (unsigned)cmdline_u64("qd", 4);
    hold = cmdline_u64("hold", 0);
    bench_ops = cmdline_u64("bench", 0);
    if (qd == 0 || qd > QD_MAX)
        fail(1, "buslogic: qd=%u out of range 1-%u\n", qd, QD_MAX);
    if (mib == 0 || mib > 1024)
        fail(1, "buslogic: mib=%lu out of range\n", mib);
    if (mem_ram_bytes() < REGION + REGION_SIZE)
        fail(1, "buslogic: need %llu MiB of RAM\n", (REGION + REGION_SIZE) >> 20);
    pci_scan(collect, NULL);
    if (nadapters == 0)
        fail(2, "buslogic: no %04x:%04x on bus 0\n", BL_VENDOR, BL_DEVICE);
    for (int a = 0; a < nadapters; a++) {
        ad = (unsigned)a;
        init_adapter(&adapters[a]);
    }
    if (bench_ops)
        net_time_init(); /* PIT at 100 Hz, TSC calibrated: net_us() in ring 3 */
    return (int)run_user(io_main, user_stack_top);
}
