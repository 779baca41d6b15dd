/*
 * mpt-disk: a Fusion-MPT SCSI driver for the LSI53C1030 (1000:0030) and, where the
 * message protocol is the same, QEMU's SAS1068 (1000:0054). Bring-up as mptbase does
 * it: message unit reset, IOC FACTS and PORT FACTS through the doorbell handshake,
 * reply frames posted, IOC INIT, PORT ENABLE; then every target is scanned with
 * INQUIRY and READ CAPACITY, and on each disk `mib=` MiB are written with a pattern,
 * read back and verified, in 1 MiB commands whose SGL is 64 elements of 16 KiB
 * (a chain buffer after the ninth). The driver runs polled in ring 3 on the memory
 * BAR; ring 0 only finds the device.
 *
 * cmdline: mib=N (default 4), seed=N (default 1), targets=N (scan ids below N, default
 * 16). Pattern word w (8 bytes at byte 8w) of target t: mpt_pattern(seed, t, w).
 * Output: "mpt: target <t> ok <N> MiB" per disk, "mpt: done <k> disks"; exit 0.
 *
 * bench=1 (for bench/scsi.py): on the first disk only, at queue depth 1, times
 * 1 MiB sequential writes then reads over `mib` MiB, then `ops=` (default 20000)
 * 4 KiB reads and writes at random 4 KiB-aligned offsets in that area, and prints
 * "mpt: bench <name> <ops> ops <bytes> bytes <us> us" for each.
 */
#include "net.h"
#include "rt.h"

#define LSI_VENDOR 0x1000
#define DEV_53C1030 0x0030
#define DEV_SAS1068 0x0054

/* Registers. */
#define DOORBELL 0x00
#define HIS      0x30
#define HIM      0x34
#define REQ_FIFO 0x40
#define REP_FIFO 0x44
#define HIS_DB   0x01
#define HIS_REP  0x08
#define HIS_IOP  0x80000000u
#define DB_ACTIVE 0x08000000u

/* Guest-physical layout (identity-mapped, user-accessible). */
#define FRAMES     0x00800000ull   /* request frames, 128 bytes each */
#define CHAINS     0x00810000ull   /* one 512-byte chain buffer per frame */
#define REPLIES    0x00820000ull   /* reply frames, 128 bytes each */
#define SENSE      0x00830000ull
#define SMALLBUF   0x00840000ull   /* INQUIRY / READ CAPACITY data */
#define DATA       0x01000000ull   /* 1 MiB transfer buffer */
#define FRAME_SIZE 128
#define REPLY_SIZE 128
#define NREPLIES   32
#define CHUNK      (1u << 20)
#define PIECE      (16u << 10)
#define SPIN_LIMIT 200000000ull

static uint64_t mmio;
static uint16_t device_id;
static uint32_t frame_bytes = FRAME_SIZE;
static uint32_t next_ctx = 1;

static uint32_t rd(uint32_t off) { return mmio_read32(mmio + off); }
static void wr(uint32_t off, uint32_t v) { mmio_write32(mmio + off, v); }

uint64_t mpt_pattern(uint64_t seed, unsigned t, uint64_t word)
{
    uint64_t z = word + ((uint64_t)t << 40) + seed * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ handshake */

static bool wait_his(uint32_t mask, bool set)
{
    for (uint64_t i = 0; i < SPIN_LIMIT; i++)
        if (((rd(HIS) & mask) != 0) == set)
            return true;
    return false;
}

/* A request through the doorbell, the reply (up to `reply_max` bytes) 16 bits at a
 * time, acknowledging each word, as mpt_handshake_req_reply_wait does. */
static bool handshake(const void *req, unsigned req_bytes, void *reply, unsigned reply_max)
{
    const uint32_t *dw = req;
    uint16_t *out = reply;
    wr(HIS, 0);
    wr(DOORBELL, (0x42u << 24) | ((req_bytes / 4) << 16));
    if (!wait_his(HIS_DB, true) || !(rd(DOORBELL) & DB_ACTIVE))
        return false;
    wr(HIS, 0);
    for (unsigned i = 0; i < req_bytes / 4; i++) {
        if (!wait_his(HIS_IOP, false))
            return false;
        wr(DOORBELL, dw[i]);
    }
    unsigned words = 2;
    for (unsigned i = 0; i < words; i++) {
        if (!wait_his(HIS_DB, true))
            return false;
        uint16_t w = (uint16_t)rd(DOORBELL);
        if (i < reply_max / 2)
            out[i] = w;
        wr(HIS, 0);
        if (i == 1)
            words = (w & 0xFF) * 2u;
    }
    if (!wait_his(HIS_DB, true))
        return false;
    wr(HIS, 0);
    return true;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* ----------------------------------------------------------------- SCSI */

struct result {
    bool ok;            /* GOOD (context reply, or GOOD with an underrun) */
    uint16_t ioc_status;
    uint8_t scsi_status, sense_key, asc;
    uint32_t transferred;
};

/* One SCSI IO: dir 0 none, 1 write, 2 read; the buffer is split into PIECE-sized simple
 * elements, the ninth LAST and followed by a chain element to the rest. */
static struct result scsi(unsigned target, const uint8_t *cdb, unsigned cdb_len, unsigned dir, uint64_t buf,
                          uint32_t len)
{
    struct result res = {0};
    uint8_t *f = (uint8_t *)FRAMES;
    uint32_t ctx = next_ctx++ & 0x7FFFFFFF;
    memset(f, 0, FRAME_SIZE);
    f[0] = (uint8_t)target;
    f[3] = 0x00;
    f[4] = (uint8_t)cdb_len;
    f[5] = 32;
    *(volatile uint32_t *)(f + 8) = ctx;
    *(uint32_t *)(f + 20) = dir << 24;
    memcpy(f + 24, cdb, cdb_len);
    *(uint32_t *)(f + 40) = len;
    *(uint32_t *)(f + 44) = (uint32_t)SENSE;
    memset((void *)SENSE, 0, 32);
    uint32_t pieces = (len + PIECE - 1) / PIECE;
    uint32_t dirflag = dir == 1 ? 0x04000000u : 0;
    uint32_t *sge = (uint32_t *)(f + 48);
    for (uint32_t i = 0; i < pieces; i++) {
        uint32_t n = len - i * PIECE < PIECE ? len - i * PIECE : PIECE;
        uint32_t flags = 0x10000000u | dirflag;
        if (i == pieces - 1)
            flags |= 0xC1000000u;                 /* LAST, EOB, EOL */
        else if (i == 8)
            flags |= 0x80000000u;                 /* LAST in the frame: a chain follows */
        if (i == 9) {
            /* chain element at dword 30 of the frame, to the chain buffer */
            uint32_t *chain = (uint32_t *)(f + 48 + 9 * 8);
            chain[0] = 0x30000000u | ((pieces - 9) * 8);
            chain[1] = (uint32_t)CHAINS;
            sge = (uint32_t *)CHAINS;
        }
        sge[0] = flags | n;
        sge[1] = (uint32_t)(buf + (uint64_t)i * PIECE);
        sge += 2;
    }
    if (pieces == 0) {
        sge[0] = 0xD1000000u;                     /* no data: one empty LAST|EOB|EOL element, as mptscsih */
        sge[1] = 0xFFFFFFFFu;
    }
    if (pieces > 9)
        f[2] = (48 + 9 * 8) / 4;                  /* ChainOffset */
    barrier();
    wr(REQ_FIFO, (uint32_t)FRAMES);
    for (uint64_t i = 0; i < SPIN_LIMIT; i++) {
        uint32_t v = rd(REP_FIFO);
        if (v == 0xFFFFFFFFu)
            continue;
        if (!(v & 0x80000000u)) {
            if (v != ctx)
                fail(10, "mpt: context reply 0x%x for request 0x%x\n", v, ctx);
            res.ok = true;
            res.transferred = len;
            return res;
        }
        uint8_t *r = (uint8_t *)(uint64_t)(v << 1);
        if (le32(r + 8) != ctx)
            fail(11, "mpt: address reply for 0x%x, expected 0x%x\n", le32(r + 8), ctx);
        res.scsi_status = r[12];
        res.ioc_status = le16(r + 14) & 0x7FFF;
        res.transferred = le32(r + 0x14);
        if (r[13] & 0x01) {
            res.sense_key = ((uint8_t *)SENSE)[2] & 0x0F;
            res.asc = ((uint8_t *)SENSE)[12];
        }
        res.ok = res.scsi_status == 0 && (res.ioc_status == 0 || res.ioc_status == 0x45);
        wr(REP_FIFO, v << 1);                    /* the frame goes back */
        return res;
    }
    fail(12, "mpt: no reply for request 0x%x (target %u opcode 0x%x)\n", ctx, target, cdb[0]);
}

/* Retries a command once per pending UNIT ATTENTION (a reset or power-on). */
static struct result scsi_retry(unsigned target, const uint8_t *cdb, unsigned cdb_len, unsigned dir, uint64_t buf,
                                uint32_t len)
{
    struct result r;
    for (int i = 0; i < 4; i++) {
        r = scsi(target, cdb, cdb_len, dir, buf, len);
        if (r.ok || r.scsi_status != 0x02 || r.sense_key != 0x06)
            return r;
    }
    return r;
}

/* ---------------------------------------------------------------- bring-up */

static void bring_up(void)
{
    /* Message unit reset when the IOC is not READY (mptbase's SendIocReset). */
    if ((rd(DOORBELL) >> 28) != 1) {
        wr(DOORBELL, 0x40u << 24);
        for (uint64_t i = 0; i < SPIN_LIMIT && (rd(DOORBELL) >> 28) != 1; i++)
            ;
    }
    if ((rd(DOORBELL) >> 28) != 1)
        fail(4, "mpt: IOC not READY (doorbell 0x%x)\n", rd(DOORBELL));

    uint32_t req[16];
    uint8_t reply[128];
    memset(req, 0, sizeof req);
    req[0] = 0x03u << 24;                         /* IOC FACTS */
    req[2] = 0x1001;
    memset(reply, 0, sizeof reply);
    if (!handshake(req, 12, reply, sizeof reply))
        fail(5, "mpt: IOC FACTS handshake failed (doorbell 0x%x)\n", rd(DOORBELL));
    frame_bytes = le16(reply + 0x1A) * 4u;
    printf("mpt: ioc facts msgversion 0x%04x frame %u credits %u replies %u maxdevices %u\n", le16(reply),
           frame_bytes, le16(reply + 0x24), le16(reply + 0x18), reply[0x2E]);
    if (frame_bytes < FRAME_SIZE || le32(reply + 8) != 0x1001)
        fail(5, "mpt: bad IOC FACTS reply\n");

    memset(req, 0, sizeof req);
    req[0] = 0x05u << 24;                         /* PORT FACTS, port 0 */
    req[2] = 0x1002;
    memset(reply, 0, sizeof reply);
    if (!handshake(req, 12, reply, sizeof reply))
        fail(5, "mpt: PORT FACTS handshake failed\n");
    printf("mpt: port type 0x%02x id %u protocols 0x%x\n", reply[0x15], le16(reply + 0x18), le16(reply + 0x1A));
    if (!(le16(reply + 0x1A) & 0x08))
        fail(5, "mpt: port 0 is no initiator\n");

    for (unsigned i = 0; i < NREPLIES; i++)
        wr(REP_FIFO, (uint32_t)(REPLIES + i * REPLY_SIZE));

    memset(req, 0, sizeof req);
    /* IOC INIT: WhoInit host driver, function 2, MaxDevices 16, MaxBuses 1 */
    req[0] = (0x02u << 24) | 4;
    req[1] = (1u << 16) | (16u << 8);
    req[2] = 0x1003;
    req[3] = REPLY_SIZE;                          /* ReplyFrameSize */
    memset(reply, 0, sizeof reply);
    if (!handshake(req, 24, reply, sizeof reply) || le16(reply + 14) != 0)
        fail(6, "mpt: IOC INIT failed (status 0x%x)\n", le16(reply + 14));
    for (uint64_t i = 0; i < SPIN_LIMIT && (rd(DOORBELL) >> 28) != 2; i++)
        ;
    if ((rd(DOORBELL) >> 28) != 2)
        fail(6, "mpt: not OPERATIONAL after IOC INIT (doorbell 0x%x)\n", rd(DOORBELL));

    memset(req, 0, sizeof req);
    req[0] = 0x06u << 24;                         /* PORT ENABLE */
    req[2] = 0x1004;
    if (!handshake(req, 12, reply, sizeof reply) || le16(reply + 14) != 0)
        fail(6, "mpt: PORT ENABLE failed\n");
    wr(HIM, HIS_DB | HIS_REP);                    /* polled */
    printf("mpt: operational\n");
}

/* --------------------------------------------------------------- the test */

static void fill(uint64_t seed, unsigned t, uint64_t byte_off)
{
    uint64_t *p = (uint64_t *)DATA;
    uint64_t w0 = byte_off / 8;
    for (uint64_t i = 0; i < CHUNK / 8; i++)
        p[i] = mpt_pattern(seed, t, w0 + i);
}

static bool check(uint64_t seed, unsigned t, uint64_t byte_off, uint64_t *bad)
{
    const uint64_t *p = (const uint64_t *)DATA;
    uint64_t w0 = byte_off / 8;
    for (uint64_t i = 0; i < CHUNK / 8; i++)
        if (p[i] != mpt_pattern(seed, t, w0 + i)) {
            *bad = byte_off + i * 8;
            return false;
        }
    return true;
}

static void rw10(uint8_t *cdb, bool write, uint32_t lba, uint16_t blocks)
{
    memset(cdb, 0, 10);
    cdb[0] = write ? 0x2A : 0x28;
    cdb[2] = (uint8_t)(lba >> 24); cdb[3] = (uint8_t)(lba >> 16); cdb[4] = (uint8_t)(lba >> 8); cdb[5] = (uint8_t)lba;
    cdb[7] = (uint8_t)(blocks >> 8); cdb[8] = (uint8_t)blocks;
}

static void bench_report(const char *name, uint64_t ops, uint64_t bytes, uint64_t us)
{
    printf("mpt: bench %s %lu ops %lu bytes %lu us\n", name, ops, bytes, us);
}

/* Queue depth 1 timings on target t over its first `mib` MiB (see the header). */
static void bench(unsigned t, uint64_t mib, uint64_t ops)
{
    uint8_t cdb[10];
    uint64_t bytes = mib << 20;
    memset((void *)DATA, 0x5A, CHUNK);
    for (int write = 1; write >= 0; write--) {
        uint64_t t0 = net_us();
        for (uint64_t off = 0; off < bytes; off += CHUNK) {
            rw10(cdb, write, (uint32_t)(off / 512), CHUNK / 512);
            if (!scsi_retry(t, cdb, 10, write ? 1 : 2, DATA, CHUNK).ok)
                fail(30, "mpt: bench I/O failed\n");
        }
        bench_report(write ? "seqwrite1m" : "seqread1m", bytes / CHUNK, bytes, net_us() - t0);
    }
    uint64_t x = 0x2545F4914F6CDD1Dull;
    uint64_t blocks4k = bytes / 4096;
    for (int write = 0; write <= 1; write++) {
        uint64_t t0 = net_us();
        for (uint64_t i = 0; i < ops; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            rw10(cdb, write, (uint32_t)((x % blocks4k) * 8), 8);
            if (!scsi(t, cdb, 10, write ? 1 : 2, DATA, 4096).ok)
                fail(30, "mpt: bench I/O failed\n");
        }
        bench_report(write ? "randwrite4k" : "randread4k", ops, ops * 4096, net_us() - t0);
    }
}

static uint64_t app(void)
{
    uint64_t mib = cmdline_u64("mib", 4), seed = cmdline_u64("seed", 1), max_targets = cmdline_u64("targets", 16);
    bool benchmark = cmdline_u64("bench", 0) != 0;
    bring_up();
    unsigned disks = 0;
    for (unsigned t = 0; t < max_targets && t < 16; t++) {
        if (t == 7 && device_id == DEV_53C1030)
            continue;                             /* the initiator */
        uint8_t inq[6] = {0x12, 0, 0, 0, 36, 0};
        memset((void *)SMALLBUF, 0, 64);
        struct result r = scsi(t, inq, 6, 2, SMALLBUF, 36);
        if (!r.ok)
            continue;                             /* selection timeout or invalid id */
        uint8_t *id = (uint8_t *)SMALLBUF;
        if ((id[0] & 0xE0) != 0 || (id[0] & 0x1F) != 0)
            continue;                             /* no disk at LUN 0 */
        char vendor[9], product[17];
        memcpy(vendor, id + 8, 8); vendor[8] = 0;
        memcpy(product, id + 16, 16); product[16] = 0;
        uint8_t tur[6] = {0};
        r = scsi_retry(t, tur, 6, 0, 0, 0);
        if (!r.ok)
            fail(20, "mpt: target %u TEST UNIT READY: status 0x%x ioc 0x%x key 0x%x asc 0x%x\n", t, r.scsi_status,
                 r.ioc_status, r.sense_key, r.asc);
        uint8_t cap[10] = {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        r = scsi_retry(t, cap, 10, 2, SMALLBUF, 8);
        if (!r.ok)
            fail(21, "mpt: target %u READ CAPACITY failed (ioc 0x%x)\n", t, r.ioc_status);
        uint8_t *c = (uint8_t *)SMALLBUF;
        uint32_t last = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
        uint32_t bsize = (uint32_t)c[4] << 24 | (uint32_t)c[5] << 16 | (uint32_t)c[6] << 8 | c[7];
        uint64_t size = ((uint64_t)last + 1) * bsize;
        printf("mpt: target %u present \"%s\" \"%s\" %lu MiB\n", t, vendor, product, size >> 20);
        if (bsize != 512)
            fail(22, "mpt: target %u block size %u\n", t, bsize);
        uint64_t bytes = mib << 20;
        if (bytes > size)
            fail(23, "mpt: target %u holds %lu MiB, %lu MiB asked\n", t, size >> 20, mib);
        if (benchmark) {
            bench(t, mib, cmdline_u64("ops", 20000));
            printf("mpt: done 1 disks\n");
            return 0;
        }
        uint8_t cdb[10];
        for (uint64_t off = 0; off < bytes; off += CHUNK) {
            fill(seed, t, off);
            rw10(cdb, true, (uint32_t)(off / 512), CHUNK / 512);
            r = scsi_retry(t, cdb, 10, 1, DATA, CHUNK);
            if (!r.ok || r.transferred != CHUNK)
                fail(24, "mpt: target %u WRITE at %lu failed (status 0x%x ioc 0x%x)\n", t, off, r.scsi_status, r.ioc_status);
        }
        for (uint64_t off = 0; off < bytes; off += CHUNK) {
            memset((void *)DATA, 0, CHUNK);
            rw10(cdb, false, (uint32_t)(off / 512), CHUNK / 512);
            r = scsi_retry(t, cdb, 10, 2, DATA, CHUNK);
            if (!r.ok || r.transferred != CHUNK)
                fail(25, "mpt: target %u READ at %lu failed (status 0x%x ioc 0x%x)\n", t, off, r.scsi_status, r.ioc_status);
            uint64_t bad;
            if (!check(seed, t, off, &bad))
                fail(26, "mpt: target %u verify failed at byte %lu\n", t, bad);
        }
        printf("mpt: target %u ok %lu MiB\n", t, mib);
        disks++;
    }
    printf("mpt: done %u disks\n", disks);
    return disks ? 0 : 2;
}

int main(void)
{
    struct pci_dev d;
    if (!pci_find(LSI_VENDOR, DEV_53C1030, &d) && !pci_find(LSI_VENDOR, DEV_SAS1068, &d))
        fail(3, "mpt: no LSI 53C1030 or SAS1068 adapter\n");
    device_id = d.device;
    struct pci_bar bar = {0};
    for (int i = 0; i < 6;) {
        int slots = pci_bar(&d, i, &bar);
        if (bar.type == PCI_BAR_MEM32 || bar.type == PCI_BAR_MEM64)
            break;
        bar.type = PCI_BAR_NONE;
        i += slots > 0 ? slots : 1;
    }
    if (bar.type == PCI_BAR_NONE)
        fail(3, "mpt: no memory BAR\n");
    mmio = bar.addr;
    pci_enable(&d, PCI_CMD_MEM | PCI_CMD_MASTER);
    if (cmdline_u64("bench", 0))
        net_time_init();                          /* the TSC, calibrated, for net_us() */
    printf("mpt: found %04x:%04x at %02x:%02x.%u mem 0x%lx\n", d.vendor, d.device, d.bus, d.dev, d.fn, mmio);
    return (int)run_user(app, user_stack_top);
}
