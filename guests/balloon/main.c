/*
 * balloon: a VMware balloon driver (the protocol Linux's vmw_balloon speaks on port
 * 0x5670) and a memory checker, for the VMkernel's balloon and host swap.
 *
 * The guest's free pool is the RAM above its image (up to 3 GiB). Every pool page is
 * filled with a pattern derived from its address; the checker verifies it word by
 * word. Page selection, filling and checking run in ring 3 (native speed); only the
 * balloon calls (which pass arguments in EBX/ECX/ESI) are made from ring 0.
 *
 * Command line:
 *   (default)   the driver: START, GUEST_ID, then poll GET_TARGET 20 times a second,
 *               inflate/deflate by batches of up to 512 pages (BATCHED_LOCK/UNLOCK)
 *               from its own pool; each time the balloon settles at a new size it
 *               prints `balloon: size=<pages> target=<pages>`, checks the pool (pages
 *               it holds: skipped; pages it got back: must read zero, then refilled)
 *               and prints `balloon: check ok pages=<checked> zeroed=<n>`.
 *   passes=N    no driver: N checker passes over the whole pool, each verifying the
 *               previous pattern and writing the next (`balloon: pass <k> ok pages=<P>`),
 *               then exit 0 (for host swap).
 *   hostile=1   protocol errors the host must answer (see hostile()), then exit 0 once
 *               the host sets the target back to 0.
 * Any mismatch prints `balloon: check FAILED ...` and exits 1.
 */
#include "rt.h"

#define BALLOON_PORT  0x5670
#define BALLOON_MAGIC 0x456c6d6fu
enum { CMD_START = 0, CMD_GET_TARGET = 1, CMD_LOCK = 2, CMD_UNLOCK = 3, CMD_GUEST_ID = 4,
       CMD_BATCHED_LOCK = 6, CMD_BATCHED_UNLOCK = 7, CMD_2M_LOCK = 8 };
enum { ST_SUCCESS = 0, ST_CMD_INVALID = 1, ST_PPN_INVALID = 2, ST_PPN_LOCKED = 3,
       ST_PPN_UNLOCKED = 4, ST_PPN_NOTNEEDED = 6, ST_RESET = 7, ST_WITH_CAPS = 0x03000000 };
#define CAP_BASIC   (1u << 1)
#define CAP_BATCHED (1u << 2)
#define BATCH_MAX   512

/* Page states, one byte per pool page (kept in the pool's first pages). */
enum { PAGE_FREE = 0, PAGE_BALLOON = 1, PAGE_RETURNED = 2 };

static uint64_t batch[BATCH_MAX] __attribute__((aligned(4096)));
static uint64_t pool_start, pool_pages;  /* balloonable pages start at pool_start */
static uint8_t *state;
static uint64_t seed;
static volatile uint32_t ticks;

/* ring-3 work parameters and results */
static uint64_t want, got, checked, zeroed, bad_addr, bad_value, bad_expected;
static int deflating;

struct reply { uint32_t status; uint64_t rbx, rcx; };

static struct reply bcall(uint32_t cmd, uint64_t arg1, uint64_t arg2)
{
    uint64_t ax = BALLOON_MAGIC, bx = arg1, cx = cmd, dx = BALLOON_PORT, si = arg2;
    __asm__ volatile("inl %%dx, %%eax" : "+a"(ax), "+b"(bx), "+c"(cx), "+d"(dx), "+S"(si) : : "memory");
    return (struct reply){ (uint32_t)ax, bx, cx };
}

static inline uint64_t pattern(uint64_t addr, uint64_t s)
{
    uint64_t x = (addr ^ s) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static inline uint64_t page_addr(uint64_t i) { return pool_start + i * 4096; }

static void fill_page(uint64_t i, uint64_t s)
{
    uint64_t a = page_addr(i);
    volatile uint64_t *w = (volatile uint64_t *)a;
    for (int k = 0; k < 512; k++) w[k] = pattern(a + 8 * k, s);
}

/* false (and bad_* set) when the page does not hold pattern s (or zero when s == 0). */
static bool check_page(uint64_t i, uint64_t s, bool zero)
{
    uint64_t a = page_addr(i);
    volatile uint64_t *w = (volatile uint64_t *)a;
    for (int k = 0; k < 512; k++) {
        uint64_t expect = zero ? 0 : pattern(a + 8 * k, s);
        if (w[k] != expect) {
            bad_addr = a + 8 * k; bad_value = w[k]; bad_expected = expect;
            return false;
        }
    }
    return true;
}

static uint64_t user_fill(void)
{
    for (uint64_t i = 0; i < pool_pages; i++) { state[i] = PAGE_FREE; fill_page(i, seed); }
    return 0;
}

/* The checker: free pages hold the pattern; returned ones read zero, then are refilled. */
static uint64_t user_check(void)
{
    checked = zeroed = 0;
    for (uint64_t i = 0; i < pool_pages; i++) {
        if (state[i] == PAGE_BALLOON) continue;
        bool zero = state[i] == PAGE_RETURNED;
        if (!check_page(i, seed, zero)) return zero ? 2 : 1;
        if (zero) { fill_page(i, seed); state[i] = PAGE_FREE; zeroed++; }
        checked++;
    }
    return 0;
}

/* One swap pass: verify seed, write seed + 1. */
static uint64_t user_pass(void)
{
    for (uint64_t i = 0; i < pool_pages; i++) {
        if (!check_page(i, seed, false)) return 1;
        fill_page(i, seed + 1);
    }
    return 0;
}

/* Fills the batch with up to `want` pages to lock (free, from the top) or unlock. */
static uint64_t user_prepare(void)
{
    got = 0;
    uint8_t from = deflating ? PAGE_BALLOON : PAGE_FREE;
    for (uint64_t i = pool_pages; i-- > 0 && got < want;)
        if (state[i] == from) batch[got++] = page_addr(i);  /* PFN << 12, status 0 */
    return 0;
}

/* Applies the per-page statuses; returns how many changed hands. */
static uint64_t user_apply(void)
{
    uint64_t done = 0;
    for (uint64_t k = 0; k < got; k++) {
        uint64_t i = ((batch[k] & ~0xFFFull) - pool_start) / 4096;
        if ((batch[k] & 0x1F) != ST_SUCCESS) continue;
        state[i] = deflating ? PAGE_RETURNED : PAGE_BALLOON;
        done++;
    }
    return done;
}

static void irq0(struct int_frame *f) { (void)f; ticks++; pic_eoi(0); }

static void sleep_ticks(uint32_t n)
{
    uint32_t until = ticks + n;
    while ((int32_t)(ticks - until) < 0) wait_irq();
}

static void report_failure(const char *what)
{
    fail(EXIT_FAIL, "balloon: check FAILED %s at 0x%lx: 0x%lx, expected 0x%lx\n", what, bad_addr, bad_value,
         bad_expected);
}

static void expect(const char *name, uint32_t got_status, uint32_t want_status)
{
    printf("balloon: hostile %s status=%u\n", name, got_status);
    if (got_status != want_status) fail(EXIT_FAIL, "balloon: hostile %s: expected %u\n", name, want_status);
}

/* The host must refuse each of these with the protocol's status and take no page. */
static int hostile(void)
{
    expect("target-before-start", bcall(CMD_GET_TARGET, pool_pages, 0).status, ST_RESET);
    expect("lock-before-start", bcall(CMD_LOCK, pool_start >> 12, 0).status, ST_RESET);
    struct reply r = bcall(CMD_START, CAP_BASIC | CAP_BATCHED, 0);
    expect("start", r.status, ST_WITH_CAPS);
    while (bcall(CMD_GET_TARGET, pool_pages, 0).rbx < 2) sleep_ticks(2); /* the host sets a target */
    uint64_t p = pool_start >> 12, q = p + 1, outside = 0xFFFFF000ull >> 12;
    expect("lock-outside-ram", bcall(CMD_LOCK, outside, 0).status, ST_PPN_INVALID);
    expect("lock", bcall(CMD_LOCK, p, 0).status, ST_SUCCESS);
    expect("lock-twice", bcall(CMD_LOCK, p, 0).status, ST_PPN_LOCKED);
    expect("unlock-unlocked", bcall(CMD_UNLOCK, q, 0).status, ST_PPN_UNLOCKED);
    expect("unlock", bcall(CMD_UNLOCK, p, 0).status, ST_SUCCESS);
    expect("unknown-command", bcall(99, 0, 0).status, ST_CMD_INVALID);
    expect("2m-not-negotiated", bcall(CMD_2M_LOCK, (uint64_t)batch >> 12, 1).status, ST_CMD_INVALID);
    expect("batch-outside-ram", bcall(CMD_BATCHED_LOCK, outside, 1).status, ST_PPN_INVALID);
    expect("batch-too-long", bcall(CMD_BATCHED_LOCK, (uint64_t)batch >> 12, BATCH_MAX + 1).status, ST_PPN_INVALID);
    batch[0] = outside << 12;
    batch[1] = q << 12;
    batch[2] = q << 12;
    batch[3] = ((uint64_t)batch >> 12) << 12 | 0x1F; /* the batch page itself; stale status bits */
    expect("batch", bcall(CMD_BATCHED_LOCK, (uint64_t)batch >> 12, 4).status, ST_SUCCESS);
    expect("batch-entry-outside-ram", batch[0] & 0x1F, ST_PPN_INVALID);
    expect("batch-entry", batch[1] & 0x1F, ST_SUCCESS);
    expect("batch-entry-twice", batch[2] & 0x1F, ST_PPN_LOCKED);
    expect("batch-entry-self", batch[3] & 0x1F, ST_PPN_INVALID);
    /* Target 2 is reached (q plus nothing else): one more page is not needed. */
    expect("lock-beyond-target", bcall(CMD_LOCK, p, 0).status, ST_SUCCESS);
    expect("lock-not-needed", bcall(CMD_LOCK, p + 2, 0).status, ST_PPN_NOTNEEDED);
    printf("balloon: hostile ok\n");
    while (bcall(CMD_GET_TARGET, pool_pages, 0).rbx != 0) sleep_ticks(2); /* the host looks, then lets go */
    return EXIT_PASS;
}

static void find_pool(void)
{
    extern char __image_end[];
    uint64_t lo = ((uint64_t)__image_end + 0x1FFFFF) & ~0x1FFFFFull, hi = 0;
    if (start_info && start_info->version >= 1 && start_info->memmap_paddr) {
        const struct hvm_memmap_entry *e = (const void *)start_info->memmap_paddr;
        for (uint32_t i = 0; i < start_info->memmap_entries; i++) {
            uint64_t end = e[i].addr + e[i].size;
            if (e[i].type == 1 && e[i].addr <= lo && end > hi) hi = end;
        }
    }
    if (hi > 0xC0000000ull) hi = 0xC0000000ull;
    if (hi <= lo + (1 << 20)) fail(EXIT_FAIL, "balloon: no RAM above the image (memmap)\n");
    uint64_t total = (hi - lo) / 4096;
    uint64_t state_pages = (total + 4095) / 4096;
    state = (uint8_t *)lo;
    pool_start = lo + state_pages * 4096;
    pool_pages = total - state_pages;
}

int main(void)
{
    find_pool();
    seed = cmdline_u64("seed", 0x1234);
    printf("balloon: pool 0x%lx %lu pages\n", pool_start, pool_pages);
    pic_init();
    set_int_handler(PIC_VECTOR(0), irq0);
    pit_init_periodic(20);
    pic_unmask(0);
    if (cmdline_u64("hostile", 0)) return hostile();

    run_user(user_fill, user_stack_top);
    printf("balloon: filled %lu pages\n", pool_pages);
    uint64_t passes = cmdline_u64("passes", 0);
    if (passes) {
        for (uint64_t k = 1; k <= passes; k++) {
            if (run_user(user_pass, user_stack_top)) report_failure("pass");
            seed++;
            printf("balloon: pass %lu ok pages=%lu\n", k, pool_pages);
        }
        return EXIT_PASS;
    }

    struct reply r = bcall(CMD_START, CAP_BASIC | CAP_BATCHED, 0);
    if (r.status != ST_WITH_CAPS || !(r.rcx & CAP_BATCHED))
        fail(EXIT_FAIL, "balloon: START answered %u caps 0x%lx\n", r.status, r.rcx);
    if (bcall(CMD_GUEST_ID, 1 /* Linux */, 0).status != ST_SUCCESS) fail(EXIT_FAIL, "balloon: GUEST_ID refused\n");
    printf("balloon: started caps=0x%lx\n", r.rcx);

    uint64_t size = 0, reported = ~0ull;
    for (;;) {
        r = bcall(CMD_GET_TARGET, pool_pages, 0);
        if (r.status == ST_RESET) {
            /* The host lost our balloon: everything it held is ours again (zero). */
            for (uint64_t i = 0; i < pool_pages; i++) if (state[i] == PAGE_BALLOON) state[i] = PAGE_RETURNED;
            size = 0;
            bcall(CMD_START, CAP_BASIC | CAP_BATCHED, 0);
            continue;
        }
        uint64_t target = r.rbx > pool_pages ? pool_pages : r.rbx;
        if (target != size) {
            deflating = target < size;
            want = deflating ? size - target : target - size;
            if (want > BATCH_MAX) want = BATCH_MAX;
            run_user(user_prepare, user_stack_top);
            if (got) {
                r = bcall(deflating ? CMD_BATCHED_UNLOCK : CMD_BATCHED_LOCK, (uint64_t)batch >> 12, got);
                if (r.status != ST_SUCCESS) fail(EXIT_FAIL, "balloon: batch refused: %u\n", r.status);
                uint64_t done = run_user(user_apply, user_stack_top);
                size = deflating ? size - done : size + done;
                if (done == got) continue;  /* next batch at once */
            }
        } else if (size != reported) {
            printf("balloon: size=%lu target=%lu\n", size, target);
            uint64_t bad = run_user(user_check, user_stack_top);
            if (bad) report_failure(bad == 2 ? "returned page not zero" : "pattern");
            printf("balloon: check ok pages=%lu zeroed=%lu\n", checked, zeroed);
            reported = size;
        }
        sleep_ticks(1);
    }
}
