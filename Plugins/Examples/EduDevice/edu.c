/*
 * edu.c — an example device plugin in plain C99, built against hvplugin.h alone.
 *
 * It models the "edu" educational PCI device that QEMU ships (QEMU docs/specs/edu.rst),
 * so a guest driver written for QEMU's edu runs unchanged here:
 *
 *   PCI 1234:11e8, class 0x00ff00, revision 0x10, INTA#, one MSI vector,
 *   BAR0: 32-bit MMIO, 1 MiB.
 *
 *   offset  access  register
 *   0x00    R       identification 0x010000ed (major 1, minor 0, magic 0xed)
 *   0x04    RW      liveness: reads back the bitwise NOT of the last value written
 *   0x08    RW      factorial: writing n starts computing n! (32-bit, wrapping) unless a
 *                   computation is running; read the result once status bit 0 clears
 *   0x20    RW      status: bit 0 computing (read-only), bit 7 raise interrupt 0x001 when
 *                   the factorial is done
 *   0x24    R       interrupt status: the bits that raised the interrupt
 *   0x60    W       interrupt raise: ORs the value into the interrupt status and
 *                   interrupts (MSI vector 0 when enabled, else INTx asserted)
 *   0x64    W       interrupt acknowledge: clears the bits; INTx is deasserted once the
 *                   interrupt status is 0
 *   0x80    RW      DMA source address (64-bit)
 *   0x88    RW      DMA destination address (64-bit)
 *   0x90    RW      DMA transfer count in bytes (64-bit)
 *   0x98    RW      DMA command: bit 0 start (reads 1 while running), bit 1 direction
 *                   (0: guest RAM -> device buffer, 1: device buffer -> guest RAM),
 *                   bit 2 raise interrupt 0x100 when done
 *
 *   Registers below 0x80 take 4-byte accesses only; from 0x80 on, 4- or 8-byte
 *   accesses. Other sizes and unlisted offsets read as all ones and ignore writes.
 *   The DMA registers cannot be written while a transfer runs.
 *
 *   The device owns a 4 KiB buffer that DMA addresses as 0x40000..0x40fff. Guest RAM
 *   addresses are masked to `dmaMask` (default 28 bits, as in QEMU) before use.
 *
 * Differences from QEMU's model, chosen for safety and documented for driver authors:
 *   - A DMA command whose buffer range is not inside 0x40000..0x40fff, or whose guest
 *     RAM range is not RAM, transfers nothing (QEMU logs and then copies out of bounds).
 *     The command still completes (bit 0 clears) and, if bit 2 was set, still raises
 *     interrupt 0x100, so a driver that waits for completion does not hang. The problem
 *     is logged as a guest error.
 *   - INTx is deasserted whenever the interrupt status becomes 0, even if the guest
 *     enabled MSI after the line was asserted (QEMU then leaves the line asserted).
 *   - Device reset returns every register and the buffer to zero.
 *
 * The "work" (factorial and DMA) runs on a host timer a short time after the register
 * write, never inside it, so a driver must poll the status bits or wait for the
 * interrupt, as on QEMU.
 *
 * Configuration keys (relative to the device's prefix, e.g. hv.device0.dmaMask):
 *   dmaMask          mask applied to guest RAM DMA addresses (default 0xfffffff)
 *   computeDelayUs   microseconds from writing 0x08 to the result (default 10)
 *   dmaDelayUs       microseconds from starting a DMA to its completion (default 100)
 *
 * Thread contract (see hvplugin.h): create/save_state/load_state/destroy are [control];
 * reset, the BAR handlers and the timer callbacks are [device] — the host holds this
 * instance's device lock around each of them, so this file needs no locking of its own.
 * The model does not set HV_DEVICE_THREAD_SAFE.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <errno.h>
#include <ctype.h>

#include "hvplugin.h"

/* ---------------------------------------------------------------------------- */
/* Register map                                                                  */
/* ---------------------------------------------------------------------------- */

#define EDU_VENDOR_ID       0x1234u
#define EDU_DEVICE_ID       0x11e8u
#define EDU_CLASS_CODE      0x00ff00u
#define EDU_REVISION        0x10u
#define EDU_BAR_SIZE        (1u << 20)

#define EDU_REG_ID          0x00u
#define EDU_REG_LIVENESS    0x04u
#define EDU_REG_FACTORIAL   0x08u
#define EDU_REG_STATUS      0x20u
#define EDU_REG_IRQ_STATUS  0x24u
#define EDU_REG_IRQ_RAISE   0x60u
#define EDU_REG_IRQ_ACK     0x64u
#define EDU_REG_DMA_SRC     0x80u
#define EDU_REG_DMA_DST     0x88u
#define EDU_REG_DMA_COUNT   0x90u
#define EDU_REG_DMA_CMD     0x98u

#define EDU_ID_VALUE        0x010000edu

#define EDU_STATUS_COMPUTING 0x01u
#define EDU_STATUS_IRQFACT   0x80u

#define EDU_IRQ_FACTORIAL   0x001u
#define EDU_IRQ_DMA         0x100u

#define EDU_DMA_START       0x1u
#define EDU_DMA_TO_RAM      0x2u
#define EDU_DMA_IRQ         0x4u

#define EDU_DMA_BUF_ADDR    0x40000u
#define EDU_DMA_BUF_SIZE    4096u

#define EDU_DEFAULT_DMA_MASK      ((UINT64_C(1) << 28) - 1)
#define EDU_DEFAULT_COMPUTE_US    10u
#define EDU_DEFAULT_DMA_US        100u

#define EDU_STATE_VERSION   1u

/* ---------------------------------------------------------------------------- */
/* Instance                                                                      */
/* ---------------------------------------------------------------------------- */

/* hv_device is opaque to the host; each plugin defines it as its instance type. */
struct hv_device {
    const hv_host_services *hs;   /* kept from create() for the instance's lifetime */
    hv_host *host;
    hv_timer *compute_timer;
    hv_timer *dma_timer;

    /* configuration */
    uint64_t dma_mask;
    uint64_t compute_delay_ns;
    uint64_t dma_delay_ns;

    /* guest-visible state (everything below is saved) */
    uint32_t liveness;
    uint32_t factorial;
    uint32_t status;
    uint32_t irq_status;
    uint64_t dma_src;
    uint64_t dma_dst;
    uint64_t dma_count;
    uint64_t dma_cmd;
    uint8_t intx_level;           /* what we last drove on INTx */
    uint8_t dma_buf[EDU_DMA_BUF_SIZE];
};

/* ---------------------------------------------------------------------------- */
/* Helpers                                                                       */
/* ---------------------------------------------------------------------------- */

#if defined(__GNUC__)
static void edu_log(hv_device *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif

/* Formats a message and hands it to the host's log (which tags it with VM and device). */
static void edu_log(hv_device *d, int level, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->hs->log(d->host, level, msg);
}

static void edu_set_intx(hv_device *d, uint8_t level)
{
    d->intx_level = level;
    d->hs->irq_set_level(d->host, level);
}

/* Adds `bits` to the interrupt status and signals the guest: MSI vector 0 when the
 * guest enabled MSI, otherwise the INTx line. */
static void edu_raise_irq(hv_device *d, uint32_t bits)
{
    int r;
    d->irq_status |= bits;
    if (d->irq_status == 0)
        return;
    r = d->hs->msi_notify(d->host, 0);
    if (r == HV_ENOENT) {
        edu_set_intx(d, 1);
    }
    /* HV_EAGAIN: vector masked, the host latches it as pending and sends on unmask. */
}

static void edu_lower_irq(hv_device *d, uint32_t bits)
{
    d->irq_status &= ~bits;
    if (d->irq_status == 0 && d->intx_level)
        edu_set_intx(d, 0);
}

static uint32_t edu_factorial(uint32_t n)
{
    uint32_t r = 1;
    while (n > 0)
        r *= n--;            /* unsigned: wraps modulo 2^32, as QEMU's edu does */
    return r;
}

static void edu_arm(hv_device *d, hv_timer *t, uint64_t delay_ns)
{
    d->hs->timer_arm(d->host, t, d->hs->clock_ns(d->host) + delay_ns);
}

/* Registers and buffer to their reset values; does not touch the INTx line. */
static void edu_clear_registers(hv_device *d)
{
    d->liveness = 0;
    d->factorial = 0;
    d->status = 0;
    d->irq_status = 0;
    d->dma_src = 0;
    d->dma_dst = 0;
    d->dma_count = 0;
    d->dma_cmd = 0;
    memset(d->dma_buf, 0, sizeof d->dma_buf);
}

/* ---------------------------------------------------------------------------- */
/* Deferred work: [device], on a host timer thread                               */
/* ---------------------------------------------------------------------------- */

static void edu_compute_done(hv_device *d, void *opaque)
{
    (void)opaque;
    if (!(d->status & EDU_STATUS_COMPUTING))
        return;
    d->factorial = edu_factorial(d->factorial);
    d->status &= ~EDU_STATUS_COMPUTING;
    if (d->status & EDU_STATUS_IRQFACT)
        edu_raise_irq(d, EDU_IRQ_FACTORIAL);
}

/* True when [addr, addr + count) lies inside the device's DMA buffer. */
static int edu_buffer_range_ok(uint64_t addr, uint64_t count)
{
    if (addr < EDU_DMA_BUF_ADDR)
        return 0;
    addr -= EDU_DMA_BUF_ADDR;
    return addr <= EDU_DMA_BUF_SIZE && count <= EDU_DMA_BUF_SIZE - addr;
}

static uint64_t edu_ram_address(hv_device *d, uint64_t addr)
{
    uint64_t masked = addr & d->dma_mask;
    if (masked != addr)
        edu_log(d, HV_LOG_WARN, "guest error: DMA address 0x%llx clamped to 0x%llx by dmaMask 0x%llx",
                (unsigned long long)addr, (unsigned long long)masked,
                (unsigned long long)d->dma_mask);
    return masked;
}

static void edu_dma_done(hv_device *d, void *opaque)
{
    int to_ram, r = HV_OK;
    uint64_t buf_addr, count = d->dma_count;
    (void)opaque;
    if (!(d->dma_cmd & EDU_DMA_START))
        return;

    to_ram = (d->dma_cmd & EDU_DMA_TO_RAM) != 0;
    buf_addr = to_ram ? d->dma_src : d->dma_dst;
    if (count == 0) {
        /* nothing to move: completes like any other transfer */
    } else if (!(d->hs->pci_command(d->host) & 0x4)) {
        /* Bus master disabled: a real device cannot reach memory. */
        edu_log(d, HV_LOG_WARN, "guest error: DMA with bus mastering disabled; nothing transferred");
    } else if (!edu_buffer_range_ok(buf_addr, count)) {
        edu_log(d, HV_LOG_WARN,
                "guest error: DMA of %llu bytes at buffer address 0x%llx is outside 0x40000..0x40fff; "
                "nothing transferred",
                (unsigned long long)count, (unsigned long long)buf_addr);
    } else {
        uint8_t *buf = d->dma_buf + (buf_addr - EDU_DMA_BUF_ADDR);
        if (to_ram)
            r = d->hs->mem_write(d->host, edu_ram_address(d, d->dma_dst), buf, (size_t)count);
        else
            r = d->hs->mem_read(d->host, edu_ram_address(d, d->dma_src), buf, (size_t)count);
        if (r < 0)
            edu_log(d, HV_LOG_WARN,
                    "guest error: DMA of %llu bytes %s guest address 0x%llx failed (error %d); "
                    "nothing transferred",
                    (unsigned long long)count, to_ram ? "to" : "from",
                    (unsigned long long)(to_ram ? d->dma_dst : d->dma_src), r);
    }

    d->dma_cmd &= ~(uint64_t)EDU_DMA_START;
    if (d->dma_cmd & EDU_DMA_IRQ)
        edu_raise_irq(d, EDU_IRQ_DMA);
}

/* ---------------------------------------------------------------------------- */
/* BAR0 handlers: [device], on the vCPU thread that made the access              */
/* ---------------------------------------------------------------------------- */

static int edu_access_ok(uint64_t offset, uint32_t size)
{
    if (offset < EDU_REG_DMA_SRC)
        return size == 4;
    return size == 4 || size == 8;
}

static uint64_t edu_mmio_read(hv_device *d, uint32_t bar, uint64_t offset, uint32_t size)
{
    uint64_t ones = size >= 8 ? ~UINT64_C(0) : ((UINT64_C(1) << (size * 8)) - 1);
    uint64_t v;
    (void)bar;
    if (!edu_access_ok(offset, size))
        return ones;
    switch (offset) {
    case EDU_REG_ID:         v = EDU_ID_VALUE; break;
    case EDU_REG_LIVENESS:   v = d->liveness; break;
    case EDU_REG_FACTORIAL:  v = d->factorial; break;
    case EDU_REG_STATUS:     v = d->status; break;
    case EDU_REG_IRQ_STATUS: v = d->irq_status; break;
    case EDU_REG_DMA_SRC:    v = d->dma_src; break;
    case EDU_REG_DMA_DST:    v = d->dma_dst; break;
    case EDU_REG_DMA_COUNT:  v = d->dma_count; break;
    case EDU_REG_DMA_CMD:    v = d->dma_cmd; break;
    default:                 v = ~UINT64_C(0); break;
    }
    return v & ones;
}

static void edu_mmio_write(hv_device *d, uint32_t bar, uint64_t offset, uint32_t size,
                           uint64_t value)
{
    int dma_running = (d->dma_cmd & EDU_DMA_START) != 0;
    (void)bar;
    if (!edu_access_ok(offset, size))
        return;
    if (size == 4)
        value &= 0xffffffffu;

    switch (offset) {
    case EDU_REG_LIVENESS:
        d->liveness = ~(uint32_t)value;
        break;
    case EDU_REG_FACTORIAL:
        if (d->status & EDU_STATUS_COMPUTING)
            break;                      /* busy: the write is ignored */
        d->factorial = (uint32_t)value;
        d->status |= EDU_STATUS_COMPUTING;
        edu_arm(d, d->compute_timer, d->compute_delay_ns);
        break;
    case EDU_REG_STATUS:
        /* Only the interrupt-enable bit is writable. */
        d->status = (d->status & EDU_STATUS_COMPUTING) | ((uint32_t)value & EDU_STATUS_IRQFACT);
        break;
    case EDU_REG_IRQ_RAISE:
        edu_raise_irq(d, (uint32_t)value);
        break;
    case EDU_REG_IRQ_ACK:
        edu_lower_irq(d, (uint32_t)value);
        break;
    case EDU_REG_DMA_SRC:
        if (!dma_running) d->dma_src = value;
        break;
    case EDU_REG_DMA_DST:
        if (!dma_running) d->dma_dst = value;
        break;
    case EDU_REG_DMA_COUNT:
        if (!dma_running) d->dma_count = value;
        break;
    case EDU_REG_DMA_CMD:
        if (dma_running || !(value & EDU_DMA_START))
            break;                      /* only a start command is taken */
        d->dma_cmd = value;
        edu_arm(d, d->dma_timer, d->dma_delay_ns);
        break;
    default:
        break;                          /* read-only or unassigned */
    }
}

/* ---------------------------------------------------------------------------- */
/* Device ops                                                                    */
/* ---------------------------------------------------------------------------- */

/* [device] Power-on or guest reset. */
static void edu_reset(hv_device *d)
{
    d->hs->timer_cancel(d->host, d->compute_timer);
    d->hs->timer_cancel(d->host, d->dma_timer);
    edu_clear_registers(d);
    if (d->intx_level)
        edu_set_intx(d, 0);
}

/* Field names of the saved-state section (version EDU_STATE_VERSION). */
#define EDU_U32_FIELDS(X) \
    X("liveness", liveness) X("factorial", factorial) X("status", status) \
    X("irq_status", irq_status)
#define EDU_U64_FIELDS(X) \
    X("dma_src", dma_src) X("dma_dst", dma_dst) X("dma_count", dma_count) X("dma_cmd", dma_cmd)

/* [control] The VM is paused, so no timer callback runs during the save. */
static int edu_save_state(hv_device *d, hv_state_writer *w)
{
    int r = HV_OK;
#define PUT(name, field, type) \
    if (r >= 0) r = d->hs->state_put(w, name, type, &d->field, sizeof d->field);
#define PUT32(name, field) PUT(name, field, HV_STATE_U32)
#define PUT64(name, field) PUT(name, field, HV_STATE_U64)
    EDU_U32_FIELDS(PUT32)
    EDU_U64_FIELDS(PUT64)
    PUT("intx_level", intx_level, HV_STATE_U8)
    PUT("dma_buf", dma_buf, HV_STATE_BYTES)
#undef PUT
#undef PUT32
#undef PUT64
    return r < 0 ? r : HV_OK;
}

/* [control] Restores a state saved by edu_save_state. A field missing from the
 * saved state (HV_ENOENT) keeps its reset value. */
static int edu_load_state(hv_device *d, hv_state_reader *rd, uint32_t version)
{
    int r;
    if (version > EDU_STATE_VERSION)
        return HV_ENOTSUP;

    d->hs->timer_cancel(d->host, d->compute_timer);
    d->hs->timer_cancel(d->host, d->dma_timer);
    edu_clear_registers(d);
    d->intx_level = 0;

#define GET(name, field, type) \
    r = d->hs->state_get(rd, name, type, &d->field, sizeof d->field); \
    if (r < 0 && r != HV_ENOENT) return r;
#define GET32(name, field) GET(name, field, HV_STATE_U32)
#define GET64(name, field) GET(name, field, HV_STATE_U64)
    EDU_U32_FIELDS(GET32)
    EDU_U64_FIELDS(GET64)
    GET("intx_level", intx_level, HV_STATE_U8)
    GET("dma_buf", dma_buf, HV_STATE_BYTES)
#undef GET
#undef GET32
#undef GET64

    /* Never trust a saved state more than a guest write. */
    d->status &= EDU_STATUS_COMPUTING | EDU_STATUS_IRQFACT;
    d->intx_level = d->intx_level ? 1 : 0;

    /* Re-drive the line and restart work that was in flight when the state was saved. */
    d->hs->irq_set_level(d->host, d->intx_level);
    if (d->status & EDU_STATUS_COMPUTING)
        edu_arm(d, d->compute_timer, d->compute_delay_ns);
    if (d->dma_cmd & EDU_DMA_START)
        edu_arm(d, d->dma_timer, d->dma_delay_ns);
    return HV_OK;
}

/* [control] The host destroys timers and the PCI function after this returns. */
static void edu_destroy(hv_device *d)
{
    free(d);
}

/* Reads an unsigned configuration value (decimal, or hex with 0x). Returns 0 and
 * leaves *out alone when the key is absent, HV_EINVAL (logged) when malformed. */
static int edu_config_u64(hv_device *d, const char *key, uint64_t *out)
{
    const char *s = d->hs->config_get(d->host, key);
    char *end;
    unsigned long long v;
    if (s == NULL)
        return HV_OK;
    while (isspace((unsigned char)*s))
        s++;
    errno = 0;
    v = strtoull(s, &end, 0);
    while (isspace((unsigned char)*end))
        end++;
    if (*s == '\0' || *s == '-' || *end != '\0' || errno == ERANGE) {
        edu_log(d, HV_LOG_ERROR, "%s = \"%.60s\": not an unsigned number, expected e.g. 100 or 0xfffffff",
                key, d->hs->config_get(d->host, key));
        return HV_EINVAL;
    }
    *out = v;
    return HV_OK;
}

/* [control] Creates an instance: identity, BAR0, MSI, timers, configuration. */
static int edu_create(const hv_host_services *hs, hv_host *host, hv_device **out)
{
    hv_device *d;
    hv_pci_identity id;
    hv_bar_desc bar;
    uint64_t compute_us = EDU_DEFAULT_COMPUTE_US, dma_us = EDU_DEFAULT_DMA_US;
    int r;

    /* The services table may be newer (larger) than this header, never smaller. */
    if (hs == NULL || hs->struct_size < sizeof(hv_host_services) ||
        HV_ABI_MAJOR(hs->abi_version) != HV_ABI_VERSION_MAJOR)
        return HV_ENOTSUP;

    d = calloc(1, sizeof *d);
    if (d == NULL)
        return HV_ENOMEM;
    d->hs = hs;
    d->host = host;
    d->dma_mask = EDU_DEFAULT_DMA_MASK;

    if ((r = edu_config_u64(d, "dmaMask", &d->dma_mask)) < 0 ||
        (r = edu_config_u64(d, "computeDelayUs", &compute_us)) < 0 ||
        (r = edu_config_u64(d, "dmaDelayUs", &dma_us)) < 0)
        goto fail;
    if (compute_us > 10u * 1000u * 1000u || dma_us > 10u * 1000u * 1000u) {
        hs->log(host, HV_LOG_ERROR, "computeDelayUs and dmaDelayUs must be at most 10000000 (10 s)");
        r = HV_EINVAL;
        goto fail;
    }
    d->compute_delay_ns = compute_us * 1000u;
    d->dma_delay_ns = dma_us * 1000u;

    memset(&id, 0, sizeof id);
    id.struct_size = sizeof id;
    id.vendor_id = EDU_VENDOR_ID;
    id.device_id = EDU_DEVICE_ID;
    id.subsystem_vendor_id = 0x1af4;   /* what QEMU reports for its own devices */
    id.subsystem_id = 0x1100;
    id.class_code = EDU_CLASS_CODE;
    id.revision = EDU_REVISION;
    id.interrupt_pin = 1;              /* INTA# */
    if ((r = hs->pci_set_identity(host, &id)) < 0)
        goto fail;

    memset(&bar, 0, sizeof bar);
    bar.struct_size = sizeof bar;
    bar.index = 0;
    bar.kind = HV_BAR_MMIO32;
    bar.flags = 0;
    bar.size = EDU_BAR_SIZE;
    bar.read = edu_mmio_read;
    bar.write = edu_mmio_write;
    if ((r = hs->pci_add_bar(host, &bar)) < 0)
        goto fail;

    if ((r = hs->pci_add_msi(host, 1)) < 0)
        goto fail;

    d->compute_timer = hs->timer_create(host, edu_compute_done, NULL);
    d->dma_timer = hs->timer_create(host, edu_dma_done, NULL);
    if (d->compute_timer == NULL || d->dma_timer == NULL) {
        r = HV_ENOMEM;
        goto fail;
    }

    *out = d;
    return HV_OK;

fail:
    /* The host releases the identity, BAR, MSI capability and timers it created. */
    free(d);
    return r;
}

/* ---------------------------------------------------------------------------- */
/* Declared keys and console commands (ABI 1.2)                                  */
/* ---------------------------------------------------------------------------- */

/* The keys edu_create reads: `hvhost validate` checks a .vmx against them and
 * `hvhost plugins --keys edu` lists them. */
static const hv_config_key edu_keys[] = {
    { sizeof(hv_config_key), HV_KEY_UINT, "dmaMask", 0xfff, -1 /* UINT64_MAX */, NULL, "0xfffffff",
      "DMA addresses are masked with this (the QEMU device's 28 bits by default)" },
    { sizeof(hv_config_key), HV_KEY_UINT, "computeDelayUs", 0, 10000000, NULL, "10",
      "time the factorial takes, in microseconds" },
    { sizeof(hv_config_key), HV_KEY_UINT, "dmaDelayUs", 0, 10000000, NULL, "100",
      "time a DMA transfer takes, in microseconds" },
};

/* [device] `device VM hv.deviceN regs`: every register the guest can read. */
static void edu_cmd_regs(hv_device *d, char *buf, size_t len)
{
    snprintf(buf, len,
             "id 0x%08x liveness 0x%08x factorial %u status 0x%02x irq_status 0x%08x intx %u\n"
             "dma src 0x%llx dst 0x%llx count %llu cmd 0x%llx",
             (unsigned)EDU_ID_VALUE, (unsigned)d->liveness, (unsigned)d->factorial, (unsigned)d->status,
             (unsigned)d->irq_status, (unsigned)d->intx_level, (unsigned long long)d->dma_src,
             (unsigned long long)d->dma_dst, (unsigned long long)d->dma_count, (unsigned long long)d->dma_cmd);
}

/* [device] `device VM hv.deviceN read OFFSET`: one 4-byte register read, as the guest
 * would see it (reads have no side effects on this device). */
static uint32_t edu_cmd_read(hv_device *d, uint32_t offset)
{
    return (uint32_t)edu_mmio_read(d, 0, offset & (EDU_BAR_SIZE - 4u) & ~3u, 4);
}

static const uint32_t edu_args_text[] = { HV_ARG_TEXT_OUT };
static const uint32_t edu_args_offset[] = { HV_ARG_U32 };
static const char *const edu_names_offset[] = { "offset" };

static const hv_command edu_commands[] = {
    { sizeof(hv_command), 0, "regs", "dump the registers", (void (*)(void))edu_cmd_regs,
      HV_ARG_VOID, 1, edu_args_text, NULL },
    { sizeof(hv_command), 0, "read", "read the 32-bit register at a BAR0 offset", (void (*)(void))edu_cmd_read,
      HV_ARG_U32, 1, edu_args_offset, edu_names_offset },
};

/* ---------------------------------------------------------------------------- */
/* Plugin descriptor                                                             */
/* ---------------------------------------------------------------------------- */

static const hv_device_ops edu_ops = {
    sizeof(hv_device_ops),
    NULL,               /* realize: nothing to do once BARs are assigned */
    edu_reset,
    NULL,               /* pause: timers are quiet while paused (host) */
    NULL,               /* resume */
    edu_save_state,
    edu_load_state,
    edu_destroy,
};

static const hv_device_model edu_model = {
    sizeof(hv_device_model),
    HV_DEVICE_KIND_OTHER,
    "edu",
    "QEMU-compatible educational PCI device (1234:11e8): factorial, interrupts, DMA",
    0,                  /* flags: the host serialises calls with the device lock */
    EDU_STATE_VERSION,
    edu_create,
    &edu_ops,
    sizeof edu_keys / sizeof edu_keys[0],          /* 1.2: declared keys and commands */
    sizeof edu_commands / sizeof edu_commands[0],
    edu_keys,
    edu_commands,
};

static const hv_device_model *const edu_models[] = { &edu_model };

static const hv_device_factory edu_factory = {
    sizeof(hv_device_factory),
    HV_ABI_VERSION,
    sizeof edu_models / sizeof edu_models[0],
    0,
    edu_models,
};

/* [load] */
static const void *edu_get_factory(const char *factory_id)
{
    if (factory_id != NULL && strcmp(factory_id, HV_FACTORY_DEVICE) == 0)
        return &edu_factory;
    return NULL;
}

static const char *const edu_factory_ids[] = { HV_FACTORY_DEVICE, NULL };

static const hv_plugin_entry edu_entry = {
    sizeof(hv_plugin_entry),
    HV_ABI_VERSION,
    "org.hvproject.example.edu",
    "EDU example device",
    "1.0.0",
    "hvproject",
    NULL,               /* init */
    NULL,               /* deinit */
    edu_get_factory,
    edu_factory_ids,
    NULL,               /* init_with_info (1.1) */
};

#if defined(__GNUC__)
#define EDU_EXPORT __attribute__((visibility("default")))
#else
#define EDU_EXPORT
#endif

/* The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL). */
EDU_EXPORT const hv_plugin_entry *hv_plugin_entry_v1(void);

const hv_plugin_entry *hv_plugin_entry_v1(void)
{
    return &edu_entry;
}
