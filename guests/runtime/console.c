/* COM1 serial output and a small printf. */
#include "rt.h"

#define COM1 0x3F8

void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* IER: no interrupts */
    outb(COM1 + 3, 0x80); /* LCR: DLAB */
    outb(COM1 + 0, 0x01); /* divisor 1 (115200) */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1, DLAB off */
    outb(COM1 + 2, 0x07); /* FIFO on, clear */
    outb(COM1 + 4, 0x03); /* DTR | RTS, OUT2 off */
}

void serial_putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) /* LSR.THRE */
        pause();
    outb(COM1, (uint8_t)c);
}

/* The next received byte, or -1 when none is waiting (LSR.DR). */
int serial_getc(void)
{
    if (!(inb(COM1 + 5) & 0x01))
        return -1;
    return inb(COM1);
}

void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

/* ------------------------------------------------------------- printf */
struct sink {
    bool serial; /* else buf/cap */
    char *buf;
    size_t len, cap;
};

static void sink_put(struct sink *k, char c)
{
    if (k->serial)
        serial_putc(c);
    else if (k->len + 1 < k->cap)
        k->buf[k->len] = c;
    k->len++;
}

static void put_padded(struct sink *k, const char *s, size_t n, int width, bool left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left)
        while (fill-- > 0)
            sink_put(k, pad);
    for (size_t i = 0; i < n; i++)
        sink_put(k, s[i]);
    if (left)
        while (fill-- > 0)
            sink_put(k, ' ');
}

static void put_num(struct sink *k, uint64_t v, unsigned base, bool neg, int width, bool left,
                    bool zero, bool upper, const char *prefix)
{
    char tmp[24];
    int n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    int plen = (int)strlen(prefix) + (neg ? 1 : 0);
    int fill = width > n + plen ? width - n - plen : 0;
    if (!left && !zero)
        while (fill-- > 0)
            sink_put(k, ' ');
    if (neg)
        sink_put(k, '-');
    while (*prefix)
        sink_put(k, *prefix++);
    if (!left && zero)
        while (fill-- > 0)
            sink_put(k, '0');
    while (n)
        sink_put(k, tmp[--n]);
    if (left)
        while (fill-- > 0)
            sink_put(k, ' ');
}

static int vformat(struct sink *k, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_put(k, *fmt);
            continue;
        }
        fmt++;
        bool left = false, zero = false, alt = false;
        for (;; fmt++) {
            if (*fmt == '-')
                left = true;
            else if (*fmt == '0')
                zero = true;
            else if (*fmt == '#')
                alt = true;
            else
                break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        int lng = 0;
        while (*fmt == 'l' || *fmt == 'z') {
            lng = (*fmt == 'z') ? 2 : lng + 1;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
            put_num(k, u, 10, v < 0, width, left, zero, false, "");
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            unsigned base = *fmt == 'u' ? 10 : 16;
            put_num(k, v, base, false, width, left, zero, *fmt == 'X',
                    (alt && base == 16) ? "0x" : "");
            break;
        }
        case 'p':
            put_num(k, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, width, left, zero,
                    false, "0x");
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            put_padded(k, s, strlen(s), width, left, ' ');
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            put_padded(k, &c, 1, width, left, ' ');
            break;
        }
        case '%':
            sink_put(k, '%');
            break;
        case '\0':
            return (int)k->len;
        default:
            sink_put(k, '%');
            sink_put(k, *fmt);
            break;
        }
    }
    return (int)k->len;
}

int vprintf(const char *fmt, va_list ap)
{
    struct sink k = {.serial = true};
    return vformat(&k, fmt, ap);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
    struct sink k = {.serial = false, .buf = buf, .len = 0, .cap = n};
    int r = vformat(&k, fmt, ap);
    if (n)
        buf[k.len < n ? k.len : n - 1] = '\0';
    return r;
}

int snprintf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}
