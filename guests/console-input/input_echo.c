/*
 * Input echo (console-input and svga-draw): prints what the remote console sends to
 * the VM's keyboard and pointers on COM1, so tests can drive hvhost's VNC and browser
 * consoles and read the result on serial.
 *
 * Brings up the i8042 as Linux's i8042/atkbd/psmouse do (controller self-test, command
 * byte with translation and both IRQs, keyboard reset and enable, mouse reset, 200 Hz,
 * stream mode on), then the VMware absolute pointer over the backdoor (GETVERSION,
 * ABSPOINTER_COMMAND enable, read the version back, request absolute) unless
 * `vmmouse=0`. Prints `input: ready`, then one line per event:
 *   key <hex bytes of one set-1 scancode sequence>    (make or break, E0/E1 prefixes)
 *   ps2 dx=<n> dy=<n> buttons=<b>                      (a relative PS/2 packet)
 *   abs x=<0-65535> y=<0-65535> buttons=<b>            (a vmmouse packet)
 * input_echo_poll() returns 1 after Esc (scancode 01).
 */
#include "rt.h"
#include "input_echo.h"

#define KBD_DATA 0x60
#define KBD_STATUS 0x64

static void expect(int ok, int code, const char *what)
{
    if (!ok) {
        printf("input: FAIL %s\n", what);
        guest_exit(code);
    }
}

static int wait_output(void)
{
    for (int i = 0; i < 1000000; i++)
        if (inb(KBD_STATUS) & 0x01) return inb(KBD_DATA);
    return -1;
}

static void wait_input_empty(void)
{
    for (int i = 0; i < 1000000 && (inb(KBD_STATUS) & 0x02); i++) pause();
}

static void controller(uint8_t cmd) { wait_input_empty(); outb(KBD_STATUS, cmd); }
static void data(uint8_t v) { wait_input_empty(); outb(KBD_DATA, v); }
static void aux(uint8_t v) { controller(0xD4); data(v); }

/* VMware backdoor call. */
struct regs { uint32_t eax, ebx, ecx, edx, esi, edi; };
static struct regs backdoor(uint32_t cmd, uint32_t arg)
{
    struct regs r;
    __asm__ volatile("inl %%dx, %%eax"
                     : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx), "=S"(r.esi), "=D"(r.edi)
                     : "a"(0x564D5868u), "b"(arg), "c"(cmd), "d"(0x5658u), "S"(0), "D"(0));
    return r;
}

/* Bytes from the IRQ handlers, consumed by main. */
#define RING 256
static volatile uint8_t kbd_ring[RING], aux_ring[RING];
static volatile unsigned kbd_head, kbd_tail, aux_head, aux_tail;

static void drain(void)
{
    while (inb(KBD_STATUS) & 0x01) {
        uint8_t s = inb(KBD_STATUS), b = inb(KBD_DATA);
        if (s & 0x20) aux_ring[aux_head++ % RING] = b;
        else kbd_ring[kbd_head++ % RING] = b;
    }
}

static void kbd_irq(struct int_frame *f) { (void)f; drain(); pic_eoi(1); }
static void aux_irq(struct int_frame *f) { (void)f; drain(); pic_eoi(12); }

static int use_vmmouse;

void input_echo_init(int vmmouse)
{
    use_vmmouse = vmmouse;
    controller(0xAD);                           /* both ports off while setting up */
    controller(0xA7);
    while (inb(KBD_STATUS) & 0x01) (void)inb(KBD_DATA);
    controller(0xAA);
    expect(wait_output() == 0x55, 2, "controller self-test");
    controller(0x60);
    data(0x47);                                 /* IRQ1, IRQ12, system, translation */
    controller(0xAE);
    controller(0xA8);
    data(0xFF);                                 /* keyboard reset */
    expect(wait_output() == 0xFA && wait_output() == 0xAA, 3, "keyboard reset");
    data(0xF4);
    expect(wait_output() == 0xFA, 3, "keyboard enable");
    aux(0xFF);                                  /* mouse reset */
    expect(wait_output() == 0xFA && wait_output() == 0xAA && wait_output() == 0x00, 4, "mouse reset");
    aux(0xF3); expect(wait_output() == 0xFA, 4, "mouse sample rate");
    aux(200); expect(wait_output() == 0xFA, 4, "mouse sample rate value");
    aux(0xF4); expect(wait_output() == 0xFA, 4, "mouse enable");

    if (use_vmmouse) {
        struct regs v = backdoor(10, ~0u);
        expect(v.ebx == 0x564D5868, 5, "backdoor GETVERSION");
        backdoor(41, 0x45414552);               /* ABSPOINTER_COMMAND: enable */
        struct regs s = backdoor(40, 0);
        expect((s.eax & 0xFFFF) == 1, 5, "vmmouse status after enable");
        struct regs d = backdoor(39, 1);
        expect(d.eax == 0x3442554A, 5, "vmmouse version");
        backdoor(41, 0x53424152);               /* request absolute */
        printf("input: vmmouse absolute\n");
    }

    set_int_handler(PIC_VECTOR(1), kbd_irq);
    set_int_handler(PIC_VECTOR(12), aux_irq);
    pic_unmask(1);
    pic_unmask(12);
    printf("input: ready\n");
}

int input_echo_pending(void)
{
    return kbd_tail != kbd_head || aux_tail != aux_head;
}

unsigned input_echo_presses;

static uint8_t seq[8];
static unsigned seq_len;
static uint8_t packet[3];
static unsigned packet_len;

int input_echo_poll(void)
{
    int escaped = 0;
    while (kbd_tail != kbd_head) {
        uint8_t b = kbd_ring[kbd_tail++ % RING];
        seq[seq_len++] = b;
        /* A sequence ends on a byte that is not a prefix (E0) and, after E1, on its 3rd byte. */
        int done = !(b == 0xE0 || b == 0xE1) && !(seq[0] == 0xE1 && seq_len < 3);
        if (done || seq_len == sizeof seq) {
            printf("key");
            for (unsigned i = 0; i < seq_len; i++) printf(" %02x", seq[i]);
            printf("\n");
            if (!(seq[seq_len - 1] & 0x80)) input_echo_presses++;
            if (seq_len == 1 && seq[0] == 0x01) escaped = 1;
            seq_len = 0;
        }
    }
    while (aux_tail != aux_head) {
        uint8_t b = aux_ring[aux_tail++ % RING];
        if (packet_len == 0 && !(b & 0x08)) continue;   /* resync on bit 3 */
        packet[packet_len++] = b;
        if (packet_len < 3) continue;
        packet_len = 0;
        if (use_vmmouse) {
            for (;;) {
                struct regs s = backdoor(40, 0);
                if ((s.eax & 0xFFFF0000) == 0xFFFF0000 || (s.eax & 0xFFFF) < 4) break;
                struct regs d = backdoor(39, 4);
                unsigned buttons = (d.eax & 0x20 ? 1 : 0) | (d.eax & 0x10 ? 2 : 0) | (d.eax & 0x08 ? 4 : 0);
                printf("abs x=%u y=%u buttons=%u\n", d.ebx, d.ecx, buttons);
            }
        } else {
            int dx = packet[1] - ((packet[0] & 0x10) ? 256 : 0);
            int dy = packet[2] - ((packet[0] & 0x20) ? 256 : 0);
            printf("ps2 dx=%d dy=%d buttons=%u\n", dx, -dy, packet[0] & 0x07);
        }
    }
    return escaped;
}
