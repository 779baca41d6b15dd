/*
 * edu_selftest.c — a minimal mock host that loads libedu.so with dlopen, as hvhost
 * does, and drives it through hvplugin.h only: guest RAM is a 1 MiB array at guest
 * physical address 0, the VM clock is a counter the test advances, and timers fire
 * when the test says so. Usage: edu_selftest path/to/libedu.so
 *
 * Mock only: a real host runs the timer callbacks on its own threads with the device
 * lock held; here everything runs on one thread, which satisfies the same contract.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hvplugin.h"

static int failures;
static int checks;

#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_EQ(a, b) do { unsigned long long a_ = (unsigned long long)(a), \
    b_ = (unsigned long long)(b); checks++; if (a_ != b_) { failures++; \
    fprintf(stderr, "%s:%d: %s == 0x%llx, expected %s == 0x%llx\n", __FILE__, __LINE__, \
            #a, a_, #b, b_); } } while (0)

/* ---------------------------------------------------------------------------- */
/* Mock host                                                                     */
/* ---------------------------------------------------------------------------- */

#define RAM_SIZE (1u << 20)
#define MAX_TIMERS 4
#define MAX_FIELDS 16

struct hv_timer {
    void (*callback)(hv_device *dev, void *opaque);
    void *opaque;
    int armed;
    uint64_t deadline;
};

struct hv_host {
    hv_device *dev;
    const char *const *config;       /* key, value, key, value, ..., NULL */
    hv_pci_identity identity;
    int identity_set;
    hv_bar_desc bars[6];
    int bar_count;
    uint32_t msi_vectors;
    int msi_enabled;                 /* what the "guest" programmed */
    int msi_sent;
    int intx;
    int intx_changes;
    uint64_t now;
    struct hv_timer timers[MAX_TIMERS];
    int timer_count;
    int log_count;
    char last_log[256];
};

static uint8_t ram[RAM_SIZE];

struct field { char name[32]; uint32_t type; size_t len; uint8_t data[4096]; };
struct hv_state_writer { struct field fields[MAX_FIELDS]; int count; };
struct hv_state_reader { const struct hv_state_writer *saved; };

static void m_log(hv_host *h, int level, const char *msg)
{
    h->log_count++;
    snprintf(h->last_log, sizeof h->last_log, "%s", msg);
    if (getenv("EDU_SELFTEST_VERBOSE"))
        fprintf(stderr, "  [plugin log %d] %s\n", level, msg);
}

static const char *m_config_get(hv_host *h, const char *key)
{
    const char *const *c;
    for (c = h->config; c && c[0]; c += 2) {
        const char *a = c[0], *b = key;
        while (*a && *b && ((*a | 0x20) == (*b | 0x20))) { a++; b++; }
        if (*a == 0 && *b == 0)
            return c[1];
    }
    return NULL;
}

static int m_pci_set_identity(hv_host *h, const hv_pci_identity *id)
{
    if (id->struct_size < sizeof *id) return HV_EINVAL;
    h->identity = *id;
    h->identity_set = 1;
    return HV_OK;
}

static int m_pci_add_bar(hv_host *h, const hv_bar_desc *bar)
{
    if (!h->identity_set || bar->index > 5 || h->bar_count >= 6) return HV_EINVAL;
    h->bars[h->bar_count++] = *bar;
    return HV_OK;
}

static int m_pci_add_msi(hv_host *h, uint32_t vectors)
{
    if (vectors != 1 && vectors != 2 && vectors != 4 && vectors != 8 && vectors != 16 && vectors != 32)
        return HV_EINVAL;
    h->msi_vectors = vectors;
    return HV_OK;
}

static uint64_t m_pci_bar_address(hv_host *h, uint32_t bar) { (void)h; (void)bar; return 0xfe000000u; }
static uint16_t m_pci_command(hv_host *h) { (void)h; return 0x6; /* memory + bus master */ }

static void m_irq_set_level(hv_host *h, int level)
{
    if (h->intx != level) h->intx_changes++;
    h->intx = level;
}

static int m_msi_notify(hv_host *h, uint32_t vector)
{
    if (!h->msi_enabled) return HV_ENOENT;
    if (vector >= h->msi_vectors) return HV_ERANGE;
    h->msi_sent++;
    return HV_OK;
}

static int m_mem_read(hv_host *h, uint64_t gpa, void *buf, size_t len)
{
    (void)h;
    if (gpa > RAM_SIZE || len > RAM_SIZE - gpa) return HV_EFAULT;
    memcpy(buf, ram + gpa, len);
    return HV_OK;
}

static int m_mem_write(hv_host *h, uint64_t gpa, const void *buf, size_t len)
{
    (void)h;
    if (gpa > RAM_SIZE || len > RAM_SIZE - gpa) return HV_EFAULT;
    memcpy(ram + gpa, buf, len);
    return HV_OK;
}

static void *m_mem_map(hv_host *h, uint64_t gpa, size_t len, int writable)
{
    (void)h; (void)writable;
    if (gpa > RAM_SIZE || len > RAM_SIZE - gpa) return NULL;
    return ram + gpa;
}

static uint64_t m_clock_ns(hv_host *h) { return h->now; }

static hv_timer *m_timer_create(hv_host *h, void (*cb)(hv_device *, void *), void *opaque)
{
    hv_timer *t;
    if (h->timer_count >= MAX_TIMERS) return NULL;
    t = &h->timers[h->timer_count++];
    t->callback = cb;
    t->opaque = opaque;
    t->armed = 0;
    return t;
}

static void m_timer_arm(hv_host *h, hv_timer *t, uint64_t deadline) { (void)h; t->armed = 1; t->deadline = deadline; }
static void m_timer_cancel(hv_host *h, hv_timer *t) { (void)h; t->armed = 0; }

static int m_state_put(hv_state_writer *w, const char *name, uint32_t type, const void *data, size_t len)
{
    struct field *f;
    if (w->count >= MAX_FIELDS || len > sizeof f->data || strlen(name) >= sizeof f->name) return HV_ENOSPC;
    if ((type == HV_STATE_U8 && len != 1) || (type == HV_STATE_U16 && len != 2) ||
        (type == HV_STATE_U32 && len != 4) || (type == HV_STATE_U64 && len != 8))
        return HV_EINVAL;
    f = &w->fields[w->count++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->type = type;
    f->len = len;
    memcpy(f->data, data, len);
    return HV_OK;
}

static int m_state_get(hv_state_reader *r, const char *name, uint32_t type, void *data, size_t len)
{
    int i;
    for (i = 0; i < r->saved->count; i++) {
        const struct field *f = &r->saved->fields[i];
        if (strcmp(f->name, name) != 0) continue;
        if (f->type != type || f->len != len) return HV_EINVAL;
        memcpy(data, f->data, len);
        return HV_OK;
    }
    return HV_ENOENT;
}

static const hv_host_services services = {
    sizeof(hv_host_services), HV_ABI_VERSION,
    m_log, m_config_get,
    m_pci_set_identity, m_pci_add_bar, m_pci_add_msi, m_pci_bar_address,
    m_irq_set_level, m_msi_notify,
    m_mem_read, m_mem_write, m_mem_map,
    m_clock_ns, m_timer_create, m_timer_arm, m_timer_cancel,
    m_state_put, m_state_get,
    NULL, NULL, NULL,       /* network backend: unused by edu */
    NULL, NULL, NULL,       /* disk backend: unused by edu */
    m_pci_command,
    NULL,                   /* get_extension: edu uses no host extension */
};

/* Advances the VM clock by `ns` and fires due timers, earliest first. */
static void advance(hv_host *h, uint64_t ns)
{
    h->now += ns;
    for (;;) {
        struct hv_timer *due = NULL;
        int i;
        for (i = 0; i < h->timer_count; i++) {
            struct hv_timer *t = &h->timers[i];
            if (t->armed && t->deadline <= h->now && (!due || t->deadline < due->deadline))
                due = t;
        }
        if (!due) break;
        due->armed = 0;
        due->callback(h->dev, due->opaque);
    }
}

static int any_timer_armed(const hv_host *h)
{
    int i;
    for (i = 0; i < h->timer_count; i++)
        if (h->timers[i].armed) return 1;
    return 0;
}

/* ---------------------------------------------------------------------------- */
/* Plugin access                                                                 */
/* ---------------------------------------------------------------------------- */

static const hv_device_model *model;

static uint64_t rd(hv_host *h, uint64_t off, uint32_t size) { return h->bars[0].read(h->dev, 0, off, size); }
static void wr(hv_host *h, uint64_t off, uint32_t size, uint64_t v) { h->bars[0].write(h->dev, 0, off, size, v); }
static uint32_t rd32(hv_host *h, uint64_t off) { return (uint32_t)rd(h, off, 4); }
static void wr32(hv_host *h, uint64_t off, uint32_t v) { wr(h, off, 4, v); }
static void wr64(hv_host *h, uint64_t off, uint64_t v) { wr(h, off, 8, v); }

static int make_device(hv_host *h, const char *const *config)
{
    memset(h, 0, sizeof *h);
    h->config = config;
    return model->create(&services, h, &h->dev);
}

static void destroy_device(hv_host *h)
{
    model->ops->destroy(h->dev);
    h->dev = NULL;
}

/* ---------------------------------------------------------------------------- */
/* Tests                                                                         */
/* ---------------------------------------------------------------------------- */

static void test_descriptor(const hv_plugin_entry *e)
{
    const hv_device_factory *f;
    CHECK_EQ(e->struct_size, sizeof(hv_plugin_entry));
    CHECK_EQ(HV_ABI_MAJOR(e->abi_version), HV_ABI_VERSION_MAJOR);
    CHECK(strcmp(e->id, "org.hvproject.example.edu") == 0);
    CHECK(e->name && e->version);
    CHECK(e->factory_ids && e->factory_ids[0] && strcmp(e->factory_ids[0], HV_FACTORY_DEVICE) == 0);
    CHECK(e->factory_ids[1] == NULL);
    CHECK(e->get_factory(HV_FACTORY_SCHED_POLICY) == NULL);
    CHECK(e->get_factory("hv.device/2") == NULL);
    f = e->get_factory(HV_FACTORY_DEVICE);
    CHECK(f != NULL);
    if (!f) return;
    CHECK_EQ(f->struct_size, sizeof(hv_device_factory));
    CHECK_EQ(f->model_count, 1);
    model = f->models[0];
    CHECK_EQ(model->struct_size, sizeof(hv_device_model));
    CHECK_EQ(model->kind, HV_DEVICE_KIND_OTHER);
    CHECK(strcmp(model->name, "edu") == 0);
    CHECK(model->create != NULL && model->ops != NULL && model->ops->destroy != NULL);
    CHECK_EQ(model->ops->struct_size, sizeof(hv_device_ops));
}

static void test_identity(void)
{
    hv_host h;
    CHECK_EQ(make_device(&h, NULL), HV_OK);
    CHECK_EQ(h.identity.vendor_id, 0x1234);
    CHECK_EQ(h.identity.device_id, 0x11e8);
    CHECK_EQ(h.identity.class_code, 0x00ff00);
    CHECK_EQ(h.identity.revision, 0x10);
    CHECK_EQ(h.identity.interrupt_pin, 1);
    CHECK_EQ(h.bar_count, 1);
    CHECK_EQ(h.bars[0].index, 0);
    CHECK_EQ(h.bars[0].kind, HV_BAR_MMIO32);
    CHECK_EQ(h.bars[0].size, 1u << 20);
    CHECK_EQ(h.msi_vectors, 1);
    CHECK_EQ(h.timer_count, 2);
    destroy_device(&h);
}

static void test_registers(void)
{
    hv_host h;
    make_device(&h, NULL);
    CHECK_EQ(rd32(&h, 0x00), 0x010000ed);
    wr32(&h, 0x04, 0x12345678);
    CHECK_EQ(rd32(&h, 0x04), 0xedcba987);
    wr32(&h, 0x00, 0);                                /* read-only */
    CHECK_EQ(rd32(&h, 0x00), 0x010000ed);
    CHECK_EQ(rd(&h, 0x00, 2), 0xffff);               /* wrong size below 0x80 */
    CHECK_EQ(rd(&h, 0x00, 8), ~0ull);
    CHECK_EQ(rd(&h, 0x80, 1), 0xff);
    CHECK_EQ(rd32(&h, 0x40), 0xffffffff);            /* unassigned */
    wr(&h, 0x04, 2, 0);                               /* ignored */
    CHECK_EQ(rd32(&h, 0x04), 0xedcba987);
    /* 64-bit DMA registers: 8-byte access, or 4-byte at the base (zero-extends). */
    wr64(&h, 0x80, 0x1122334455667788ull);
    CHECK_EQ(rd(&h, 0x80, 8), 0x1122334455667788ull);
    CHECK_EQ(rd(&h, 0x80, 4), 0x55667788);
    wr32(&h, 0x84, 0xdeadbeef);                       /* high half alone: ignored */
    CHECK_EQ(rd(&h, 0x80, 8), 0x1122334455667788ull);
    wr32(&h, 0x80, 0xabcd);
    CHECK_EQ(rd(&h, 0x80, 8), 0xabcd);
    destroy_device(&h);
}

static void test_factorial(void)
{
    hv_host h;
    make_device(&h, NULL);
    wr32(&h, 0x08, 5);
    CHECK_EQ(rd32(&h, 0x20) & 1, 1);                 /* computing */
    CHECK(any_timer_armed(&h));
    wr32(&h, 0x08, 7);                                /* busy: ignored */
    wr32(&h, 0x20, 0);                                /* cannot clear the busy bit */
    CHECK_EQ(rd32(&h, 0x20), 1);
    advance(&h, 5000);                                /* not yet (default 10 us) */
    CHECK_EQ(rd32(&h, 0x20) & 1, 1);
    advance(&h, 5000);
    CHECK_EQ(rd32(&h, 0x20), 0);
    CHECK_EQ(rd32(&h, 0x08), 120);
    CHECK_EQ(rd32(&h, 0x24), 0);
    CHECK_EQ(h.intx, 0);

    /* With bit 7: interrupt 0x001 when done. */
    wr32(&h, 0x20, 0x80);
    CHECK_EQ(rd32(&h, 0x20), 0x80);
    wr32(&h, 0x08, 10);
    advance(&h, 10000);
    CHECK_EQ(rd32(&h, 0x08), 3628800);
    CHECK_EQ(rd32(&h, 0x20), 0x80);
    CHECK_EQ(rd32(&h, 0x24), 0x001);
    CHECK_EQ(h.intx, 1);
    wr32(&h, 0x64, 0x001);
    CHECK_EQ(rd32(&h, 0x24), 0);
    CHECK_EQ(h.intx, 0);

    /* 13! wraps modulo 2^32, as on QEMU. */
    wr32(&h, 0x08, 13);
    advance(&h, 10000);
    CHECK_EQ(rd32(&h, 0x08), (uint32_t)6227020800ull);
    wr32(&h, 0x08, 0);
    advance(&h, 10000);
    CHECK_EQ(rd32(&h, 0x08), 1);
    destroy_device(&h);
}

static void test_interrupts(void)
{
    hv_host h;
    make_device(&h, NULL);
    wr32(&h, 0x60, 0x30);
    CHECK_EQ(rd32(&h, 0x24), 0x30);
    CHECK_EQ(h.intx, 1);
    wr32(&h, 0x60, 0x01);
    CHECK_EQ(rd32(&h, 0x24), 0x31);
    wr32(&h, 0x64, 0x10);
    CHECK_EQ(rd32(&h, 0x24), 0x21);
    CHECK_EQ(h.intx, 1);
    wr32(&h, 0x64, 0xffffffff);
    CHECK_EQ(rd32(&h, 0x24), 0);
    CHECK_EQ(h.intx, 0);
    wr32(&h, 0x60, 0);                                /* nothing to raise */
    CHECK_EQ(h.intx, 0);

    /* The guest enables MSI: vector 0 instead of INTx. */
    h.msi_enabled = 1;
    wr32(&h, 0x60, 0x4);
    CHECK_EQ(h.msi_sent, 1);
    CHECK_EQ(h.intx, 0);
    wr32(&h, 0x64, 0x4);
    CHECK_EQ(rd32(&h, 0x24), 0);

    /* INTx asserted, then MSI enabled: acknowledging still lowers the line. */
    h.msi_enabled = 0;
    wr32(&h, 0x60, 0x8);
    CHECK_EQ(h.intx, 1);
    h.msi_enabled = 1;
    wr32(&h, 0x64, 0x8);
    CHECK_EQ(h.intx, 0);
    destroy_device(&h);
}

static void test_dma(void)
{
    hv_host h;
    int i;
    make_device(&h, NULL);
    for (i = 0; i < 100; i++) ram[0x1000 + i] = (uint8_t)(i * 7 + 1);
    memset(ram + 0x2000, 0, 256);

    /* RAM -> device, interrupt when done. */
    wr64(&h, 0x80, 0x1000);
    wr64(&h, 0x88, 0x40000);
    wr64(&h, 0x90, 100);
    wr64(&h, 0x98, 1 | 4);
    CHECK_EQ(rd(&h, 0x98, 8), 5);
    wr64(&h, 0x80, 0x9999);                           /* locked while running */
    CHECK_EQ(rd(&h, 0x80, 8), 0x1000);
    wr64(&h, 0x98, 1);                                /* already running: ignored */
    advance(&h, 100000);
    CHECK_EQ(rd(&h, 0x98, 8), 4);
    CHECK_EQ(rd32(&h, 0x24), 0x100);
    CHECK_EQ(h.intx, 1);
    wr32(&h, 0x64, 0x100);
    CHECK_EQ(h.intx, 0);

    /* device -> RAM at an offset inside the buffer. */
    wr64(&h, 0x80, 0x40000);
    wr64(&h, 0x88, 0x2000 + 100);
    wr64(&h, 0x90, 100);
    wr64(&h, 0x98, 1 | 2);
    CHECK(memcmp(ram + 0x2000 + 100, ram + 0x1000, 100) != 0);   /* not inline */
    advance(&h, 100000);
    CHECK(memcmp(ram + 0x2000 + 100, ram + 0x1000, 100) == 0);
    CHECK_EQ(rd32(&h, 0x24), 0);                     /* no interrupt requested */

    /* The last byte of the buffer, and a zero-length transfer, are fine. */
    ram[0x3000] = 0x5a;
    wr64(&h, 0x80, 0x3000); wr64(&h, 0x88, 0x40fff); wr64(&h, 0x90, 1); wr64(&h, 0x98, 1);
    advance(&h, 100000);
    wr64(&h, 0x80, 0x40fff); wr64(&h, 0x88, 0x3001); wr64(&h, 0x90, 1); wr64(&h, 0x98, 3);
    advance(&h, 100000);
    CHECK_EQ(ram[0x3001], 0x5a);
    wr64(&h, 0x90, 0); wr64(&h, 0x98, 1);
    advance(&h, 100000);
    CHECK_EQ(rd(&h, 0x98, 8) & 1, 0);

    /* The RAM address is masked to 28 bits by default. */
    ram[0x4000] = 0;
    wr64(&h, 0x80, 0x40fff); wr64(&h, 0x88, 0x10004000ull); wr64(&h, 0x90, 1); wr64(&h, 0x98, 3);
    advance(&h, 100000);
    CHECK_EQ(ram[0x4000], 0x5a);
    destroy_device(&h);
}

static void test_dma_rejects_bad_ranges(void)
{
    static const struct { uint64_t buf_addr, count; } bad[] = {
        { 0x40f00, 0x200 },          /* runs past the end of the buffer */
        { 0x3ffff, 2 },              /* starts below it */
        { 0x40000, 4097 },           /* longer than the buffer */
        { 0x41000, 1 },              /* just past it */
        { 0x40001, ~0ull },          /* wraps around */
    };
    hv_host h;
    size_t i;
    make_device(&h, NULL);
    memset(ram + 0x8000, 0xcc, 0x2000);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int before = h.log_count;
        /* device -> RAM: RAM must be untouched. */
        wr64(&h, 0x80, bad[i].buf_addr);
        wr64(&h, 0x88, 0x8000);
        wr64(&h, 0x90, bad[i].count);
        wr64(&h, 0x98, 1 | 2 | 4);
        advance(&h, 100000);
        CHECK_EQ(rd(&h, 0x98, 8) & 1, 0);             /* completed */
        CHECK_EQ(rd32(&h, 0x24), 0x100);              /* and interrupted */
        CHECK(h.log_count > before);                  /* and logged */
        CHECK_EQ(ram[0x8000], 0xcc);
        CHECK_EQ(ram[0x8000 + 0x1fff], 0xcc);
        wr32(&h, 0x64, 0x100);
        /* RAM -> device must not write past the buffer either (no crash). */
        wr64(&h, 0x80, 0x8000);
        wr64(&h, 0x88, bad[i].buf_addr);
        wr64(&h, 0x98, 1);
        advance(&h, 100000);
        CHECK_EQ(rd(&h, 0x98, 8) & 1, 0);
    }
    /* A guest range outside RAM fails in the host; nothing is copied. */
    wr64(&h, 0x80, 0x40000); wr64(&h, 0x88, RAM_SIZE - 10); wr64(&h, 0x90, 100); wr64(&h, 0x98, 3);
    advance(&h, 100000);
    CHECK_EQ(rd(&h, 0x98, 8) & 1, 0);
    CHECK(strstr(h.last_log, "failed") != NULL);
    destroy_device(&h);
}

static void test_save_load_reset(void)
{
    hv_host a, b;
    hv_state_writer *w = calloc(1, sizeof *w);
    hv_state_reader r;
    make_device(&a, NULL);
    wr32(&a, 0x04, 0xf0f0f0f0);
    wr32(&a, 0x20, 0x80);
    wr32(&a, 0x08, 6);                                /* computing at save time */
    wr32(&a, 0x60, 0x40);                             /* INTx asserted */
    wr64(&a, 0x80, 0x1000); wr64(&a, 0x88, 0x40010); wr64(&a, 0x90, 16); wr64(&a, 0x98, 1);
    advance(&a, 100000);                              /* DMA done, factorial done */
    wr32(&a, 0x08, 4);                                /* compute again, left in flight */
    CHECK_EQ(model->ops->save_state(a.dev, w), HV_OK);

    make_device(&b, NULL);
    r.saved = w;
    CHECK_EQ(model->ops->load_state(b.dev, &r, model->state_version), HV_OK);
    CHECK_EQ(rd32(&b, 0x04), 0x0f0f0f0f);
    CHECK_EQ(rd32(&b, 0x20), 0x81);
    CHECK_EQ(rd32(&b, 0x24), 0x41);                   /* 0x40 raised + factorial 0x1 */
    CHECK_EQ(rd(&b, 0x88, 8), 0x40010);
    CHECK_EQ(rd(&b, 0x90, 8), 16);
    CHECK_EQ(b.intx, 1);                              /* line re-driven */
    advance(&b, 10000);                               /* in-flight work restarted */
    CHECK_EQ(rd32(&b, 0x08), 24);
    /* The buffer came along: copy it out of b. */
    memset(ram + 0x5000, 0, 16);
    wr64(&b, 0x80, 0x40010); wr64(&b, 0x88, 0x5000); wr64(&b, 0x98, 3);
    advance(&b, 100000);
    CHECK(memcmp(ram + 0x5000, ram + 0x1000, 16) == 0);

    CHECK_EQ(model->ops->load_state(b.dev, &r, model->state_version + 1), HV_ENOTSUP);

    /* An older state without some fields keeps the defaults for them. */
    {
        hv_state_writer *old = calloc(1, sizeof *old);
        uint32_t v = 0x1234;
        hv_state_reader ro;
        m_state_put(old, "liveness", HV_STATE_U32, &v, 4);
        ro.saved = old;
        CHECK_EQ(model->ops->load_state(b.dev, &ro, 1), HV_OK);
        CHECK_EQ(rd32(&b, 0x04), 0x1234);
        CHECK_EQ(rd32(&b, 0x24), 0);
        CHECK_EQ(b.intx, 0);
        free(old);
    }

    /* Reset. */
    wr32(&a, 0x08, 3);
    model->ops->reset(a.dev);
    CHECK_EQ(rd32(&a, 0x04), 0);
    CHECK_EQ(rd32(&a, 0x20), 0);
    CHECK_EQ(rd32(&a, 0x24), 0);
    CHECK_EQ(rd(&a, 0x80, 8), 0);
    CHECK_EQ(a.intx, 0);
    CHECK(!any_timer_armed(&a));
    destroy_device(&a);
    destroy_device(&b);
    free(w);
}

static void test_config(void)
{
    static const char *const fast[] = { "computeDelayUs", "1", "DMADELAYUS", "2", "dmaMask", "0xffffffff", NULL };
    static const char *const bad[] = { "dmaMask", "lots", NULL };
    static const char *const negative[] = { "dmaDelayUs", "-5", NULL };
    hv_host h;
    CHECK_EQ(make_device(&h, fast), HV_OK);
    wr32(&h, 0x08, 3);
    advance(&h, 1000);
    CHECK_EQ(rd32(&h, 0x08), 6);
    ram[0x6000] = 0;
    wr64(&h, 0x80, 0x40000); wr64(&h, 0x88, 0x10006000ull); wr64(&h, 0x90, 1); wr64(&h, 0x98, 3);
    advance(&h, 2000);
    CHECK_EQ(rd(&h, 0x98, 8) & 1, 0);
    CHECK(strstr(h.last_log, "failed") != NULL);      /* 32-bit mask: not clamped into RAM */
    destroy_device(&h);

    CHECK_EQ(make_device(&h, bad), HV_EINVAL);
    CHECK(strstr(h.last_log, "dmaMask") != NULL);
    CHECK_EQ(make_device(&h, negative), HV_EINVAL);
}

int main(int argc, char **argv)
{
    void *so;
    hv_plugin_entry_fn entry_fn;
    const hv_plugin_entry *entry;
    const char *path = argc > 1 ? argv[1] : "./libedu.so";

    so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return 2;
    }
    *(void **)(&entry_fn) = dlsym(so, HV_PLUGIN_ENTRY_SYMBOL);
    if (!entry_fn) {
        fprintf(stderr, "%s: no %s\n", path, HV_PLUGIN_ENTRY_SYMBOL);
        return 2;
    }
    entry = entry_fn();
    test_descriptor(entry);
    if (!model) {
        fprintf(stderr, "no device model\n");
        return 1;
    }
    test_identity();
    test_registers();
    test_factorial();
    test_interrupts();
    test_dma();
    test_dma_rejects_bad_ranges();
    test_save_load_reset();
    test_config();
    dlclose(so);

    printf("edu selftest: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
