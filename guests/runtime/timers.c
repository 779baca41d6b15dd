/* 8259 PIC, 8254 PIT, local APIC, CMOS RTC. */
#include "rt.h"

/* ---------------------------------------------------------------- PIC */
#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xA0
#define PIC2_DATA 0xA1

static uint16_t pic_mask_bits = 0xFFFF;

static void pic_write_masks(void)
{
    outb(PIC1_DATA, (uint8_t)pic_mask_bits);
    outb(PIC2_DATA, (uint8_t)(pic_mask_bits >> 8));
}

void pic_init(void)
{
    outb(PIC1_CMD, 0x11);          /* ICW1: init, ICW4 follows */
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, PIC_VECTOR(0)); /* ICW2: vector base */
    outb(PIC2_DATA, PIC_VECTOR(8));
    outb(PIC1_DATA, 0x04);          /* ICW3: slave on IRQ2 */
    outb(PIC2_DATA, 0x02);          /*       slave identity 2 */
    outb(PIC1_DATA, 0x01);          /* ICW4: 8086 mode */
    outb(PIC2_DATA, 0x01);
    pic_mask_bits = 0xFFFF;
    pic_write_masks();
}

void pic_unmask(unsigned irq)
{
    pic_mask_bits &= (uint16_t)~(1u << irq);
    if (irq >= 8)
        pic_mask_bits &= (uint16_t)~(1u << 2);
    pic_write_masks();
}

void pic_mask(unsigned irq)
{
    pic_mask_bits |= (uint16_t)(1u << irq);
    pic_write_masks();
}

void pic_eoi(unsigned irq)
{
    if (irq >= 8)
        outb(PIC2_CMD, 0x20);
    outb(PIC1_CMD, 0x20);
}

/* ---------------------------------------------------------------- PIT */
#define PIT_HZ 1193182u

void pit_init_periodic(uint32_t hz)
{
    uint32_t div = (PIT_HZ + hz / 2) / hz;
    if (div > 0xFFFF)
        div = 0; /* 0 = 65536 */
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 (rate generator), binary */
    outb(0x40, (uint8_t)div);
    outb(0x40, (uint8_t)(div >> 8));
}

void pit_stop(void)
{
    outb(0x43, 0x30); /* mode 0, no count written: output stays low */
}

/* -------------------------------------------------------------- LAPIC */
void lapic_enable(void)
{
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_LVT_LINT0, 0x700); /* ExtINT, unmasked: 8259 virtual wire */
    lapic_write(LAPIC_LVT_LINT1, 0x400); /* NMI */
    lapic_write(LAPIC_SVR, 0x100 | LAPIC_SPURIOUS_VECTOR);
}

void lapic_timer_periodic(uint8_t vector, unsigned divide, uint32_t initial_count)
{
    /* divide configuration: bits 0,1,3 encode 2^(n+1); 0b1011 = divide by 1 */
    static const uint8_t enc[8] = {0xB, 0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA};
    unsigned lg = 0;
    while ((1u << lg) < divide && lg < 7)
        lg++;
    lapic_write(LAPIC_TIMER_DIVIDE, enc[lg]);
    lapic_write(LAPIC_LVT_TIMER, (1u << 17) | vector); /* periodic */
    lapic_write(LAPIC_TIMER_INITIAL, initial_count);
}

void lapic_timer_stop(void)
{
    lapic_write(LAPIC_LVT_TIMER, 1u << 16); /* masked */
    lapic_write(LAPIC_TIMER_INITIAL, 0);
}

/* ---------------------------------------------------------------- RTC */
uint8_t cmos_read(uint8_t reg)
{
    outb(0x70, reg & 0x7F); /* bit 7 clear: NMI stays enabled */
    return inb(0x71);
}

static int bcd(uint8_t v, bool binary)
{
    return binary ? v : (v >> 4) * 10 + (v & 0xF);
}

int rtc_seconds(void)
{
    if (cmos_read(0x0A) & 0x80) /* update in progress */
        return -1;
    uint8_t s = cmos_read(0x00);
    return bcd(s, cmos_read(0x0B) & 0x04);
}

void rtc_time(int *h, int *m, int *s)
{
    while (cmos_read(0x0A) & 0x80)
        pause();
    bool binary = cmos_read(0x0B) & 0x04;
    bool h24 = cmos_read(0x0B) & 0x02;
    *s = bcd(cmos_read(0x00), binary);
    *m = bcd(cmos_read(0x02), binary);
    uint8_t hr = cmos_read(0x04);
    bool pm = hr & 0x80;
    *h = bcd(hr & 0x7F, binary);
    if (!h24) {
        *h %= 12;
        if (pm)
            *h += 12;
    }
}
