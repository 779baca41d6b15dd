/* Shared networking for test guests: see net.h. */
#include "net.h"

/* ============================================================ helpers */
uint16_t net_csum(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t sum = 0;
    for (; n > 1; n -= 2, p += 2)
        sum += (uint32_t)p[0] | (uint32_t)p[1] << 8;
    if (n)
        sum += p[0];
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

bool net_parse_ip(const char *s, uint32_t *ip)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) {
        unsigned v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4)
            v = v * 10 + (unsigned)(*s++ - '0'), digits++;
        if (!digits || v > 255)
            return false;
        b[i] = (uint8_t)v;
        if (i < 3 && *s++ != '.')
            return false;
    }
    if (*s && *s != ' ')
        return false;
    memcpy(ip, b, 4);
    return true;
}

char *net_fmt_ip(char *buf, uint32_t ip)
{
    const uint8_t *b = (const uint8_t *)&ip;
    snprintf(buf, 16, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    return buf;
}

char *net_fmt_mac(char *buf, const uint8_t *m)
{
    snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

bool net_arg(const char *key, char *val, size_t n)
{
    const char *s = cmdline();
    size_t k = strlen(key);
    for (const char *p = s; *p; p++) {
        if ((p == s || p[-1] == ' ') && strncmp(p, key, k) == 0 && p[k] == '=') {
            p += k + 1;
            size_t i = 0;
            while (p[i] && p[i] != ' ' && i + 1 < n) {
                val[i] = p[i];
                i++;
            }
            val[i] = 0;
            return true;
        }
    }
    return false;
}

uint64_t net_arg_u64(const char *key, uint64_t def)
{
    char v[24];
    if (!net_arg(key, v, sizeof v) || !v[0])
        return def;
    uint64_t r = 0;
    for (const char *p = v; *p >= '0' && *p <= '9'; p++)
        r = r * 10 + (uint64_t)(*p - '0');
    return r;
}

/* ======================================================= kernel calls */
static ksys_fn ksys_table[KSYS_MAX];

static void ksys_trap(struct int_frame *f)
{
    if ((f->cs & 3) != 3) {
        printf("EXCEPTION 3 (#BP breakpoint) in kernel mode rip=0x%lx\n", f->rip);
        guest_exit(EXIT_EXCEPTION(3));
    }
    uint64_t nr = f->rax;
    f->rax = nr < KSYS_MAX && ksys_table[nr] ? ksys_table[nr](f->rdi, f->rsi) : (uint64_t)-1;
}

static uint64_t k_print(uint64_t buf, uint64_t len)
{
    const char *s = (const char *)buf;
    for (uint64_t i = 0; i < len && i < 4096; i++)
        serial_putc(s[i]);
    return len;
}

static uint64_t k_getc(uint64_t a0, uint64_t a1)
{
    (void)a0, (void)a1;
    int c = serial_getc();
    return c < 0 ? 0 : 0x100 | (uint64_t)c;
}

static uint64_t k_idle(uint64_t a0, uint64_t a1)
{
    (void)a0, (void)a1;
    wait_irq();
    return 0;
}

void ksys_register(unsigned nr, ksys_fn fn)
{
    if (nr < KSYS_MAX)
        ksys_table[nr] = fn;
}

void ksys_init(void)
{
    /* Make the #BP gate reachable from ring 3 (DPL3); harmless on PVM, where
     * ring-3 int3 is delivered regardless. */
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    uint8_t *gate3 = (uint8_t *)idtr.base + 3 * 16;
    gate3[5] = 0xEE; /* P | DPL3 | 64-bit interrupt gate */
    set_int_handler(3, ksys_trap);
    ksys_register(KSYS_PRINT, k_print);
    ksys_register(KSYS_IDLE, k_idle);
    ksys_register(KSYS_GETC, k_getc);
}

int uprintf(const char *fmt, ...)
{
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = sizeof buf - 1;
    usys(KSYS_PRINT, (uint64_t)buf, (uint64_t)n);
    return n;
}

/* ================================================================ time */
volatile uint64_t net_ticks;
volatile uint32_t net_rtc_elapsed;
uint64_t net_tsc_khz = 1000000; /* until calibrated */
static uint64_t tsc0;
static int rtc_last = -1;
static unsigned rtc_div;

static void on_tick(struct int_frame *f)
{
    (void)f;
    net_ticks++;
    if (++rtc_div == NET_HZ / 10) { /* sample the RTC at 10 Hz */
        rtc_div = 0;
        int s = rtc_seconds();
        if (s >= 0) {
            if (rtc_last >= 0 && s != rtc_last)
                net_rtc_elapsed++;
            rtc_last = s;
        }
    }
    pic_eoi(0);
}

#define PIT_HZ 1193182u
#define PIT_RELOAD ((PIT_HZ + NET_HZ / 2) / NET_HZ)

static uint16_t pit_count(void)
{
    outb(0x43, 0x00); /* counter latch, channel 0 */
    uint8_t lo = inb(0x40), hi = inb(0x40);
    return (uint16_t)(lo | hi << 8);
}

/* TSC kHz against the PIT counter itself (latched reads, IF=0), over 3 periods (30 ms).
 * Interrupt arrival times jitter on a busy host; the counter follows host time.
 * 0 if a gap between two reads may have hidden a wrap (the vCPU was descheduled). */
static uint64_t calibrate_pit_counter(uint64_t rough_khz)
{
    /* A wrap is unambiguous while reads are less than one period apart; allow
     * 70% of one by the rough estimate (which may be off by 20-30%). */
    uint64_t max_gap = rough_khz * (1000 / NET_HZ) * 7 / 10;
    uint16_t prev = pit_count();
    uint64_t a = rdtsc(), last = a, elapsed = 0;
    while (elapsed < 3ull * PIT_RELOAD) {
        uint16_t c = pit_count();
        uint64_t now = rdtsc();
        if (now - last > max_gap)
            return 0;
        last = now;
        elapsed += c <= prev ? (uint64_t)(prev - c) : prev + (PIT_RELOAD - c); /* mode 2 counts down, reloads */
        prev = c;
    }
    return (last - a) * PIT_HZ / elapsed / 1000;
}

void net_time_init(void)
{
    set_int_handler(PIC_VECTOR(0), on_tick);
    pit_init_periodic(NET_HZ);
    pic_unmask(0);
    /* rough: TSC over 5 ticks */
    uint64_t t = net_ticks;
    while (net_ticks == t)
        wait_irq();
    uint64_t a = rdtsc();
    t = net_ticks;
    while (net_ticks - t < 5)
        wait_irq();
    uint64_t rough = (rdtsc() - a) / (5 * 1000 / NET_HZ);
    net_tsc_khz = rough ? rough : 1;
    for (int i = 0; i < 10; i++) {
        uint64_t k = calibrate_pit_counter(net_tsc_khz);
        if (k) {
            net_tsc_khz = k;
            break;
        }
    }
    tsc0 = a;
}

uint64_t net_us(void)
{
    return (rdtsc() - tsc0) * 1000 / net_tsc_khz;
}

/* ============================================================== config */
bool net_parse_config(struct net_config *c)
{
    char v[32];
    memset(c, 0, sizeof *c);
    if (!net_arg("role", v, sizeof v)) {
        printf("net: no role= on the command line\n");
        return false;
    }
    static const struct { const char *name; enum net_role role; } roles[] = {
        {"ping", ROLE_PING}, {"respond", ROLE_RESPOND}, {"sniff", ROLE_SNIFF},
        {"flood", ROLE_FLOOD}, {"sink", ROLE_SINK}, {"info", ROLE_INFO},
    };
    for (unsigned i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(v, roles[i].name) == 0)
            c->role = roles[i].role;
    if (c->role == ROLE_NONE) {
        printf("net: unknown role '%s'\n", v);
        return false;
    }
    bool bulk = c->role == ROLE_FLOOD || c->role == ROLE_SINK;
    if (!net_arg("ip", v, sizeof v) || !net_parse_ip(v, &c->ip)) {
        if (c->role != ROLE_SNIFF && c->role != ROLE_INFO) {
            printf("net: missing or bad ip=\n");
            return false;
        }
    }
    if (net_arg("peer", v, sizeof v) && !net_parse_ip(v, &c->peer)) {
        printf("net: bad peer=%s\n", v);
        return false;
    }
    if ((c->role == ROLE_PING || c->role == ROLE_FLOOD) && !c->peer) {
        printf("net: role needs peer=\n");
        return false;
    }
    c->count = (uint32_t)net_arg_u64("count", bulk ? 100000 : 5);
    c->timeout = (uint32_t)net_arg_u64("timeout", c->role == ROLE_SNIFF ? 5 : 30);
    c->arp_secs = (uint32_t)net_arg_u64("arp", c->role == ROLE_FLOOD ? 15 : 3);
    c->ring = (uint32_t)net_arg_u64("ring", bulk ? 128 : 8);
    c->interval_ms = (uint32_t)net_arg_u64("interval", 0);
    c->size = (uint32_t)net_arg_u64("size", ETH_ZLEN);
    c->flows = (uint32_t)net_arg_u64("flows", 1);
    c->window = (uint32_t)net_arg_u64("window", 0);
    c->progress = (uint32_t)net_arg_u64("progress", 0);
    c->idle = (uint32_t)net_arg_u64("idle", 2);
    if (c->size < ETH_ZLEN || c->size > NET_FRAME_MAX_JUMBO || c->flows < 1 || c->flows > 64) {
        printf("net: size=%u (60..%u) or flows=%u (1..64) out of range\n", c->size, NET_FRAME_MAX_JUMBO,
               c->flows);
        return false;
    }
    uint64_t vlan = net_arg_u64("vlan", 0);
    if (vlan > 4094 || (vlan && c->role != ROLE_PING && c->role != ROLE_RESPOND)) {
        printf("net: vlan=%lu: a VID 1..4094, with role=ping or role=respond\n", (unsigned long)vlan);
        return false;
    }
    c->vlan = (uint16_t)vlan;
    c->promisc = c->role == ROLE_SNIFF;
    if (net_arg("go", v, sizeof v)) {
        if (strcmp(v, "serial") != 0) {
            printf("net: bad go=%s (only go=serial)\n", v);
            return false;
        }
        c->go_serial = true;
    }
    if (net_arg("stop", v, sizeof v)) {
        if (strcmp(v, "serial") != 0 || c->role != ROLE_SNIFF) {
            printf("net: bad stop=%s (only stop=serial, with role=sniff)\n", v);
            return false;
        }
        c->stop_serial = true;
    }
    return true;
}

void net_await_go(const struct net_config *c)
{
    if (!c->go_serial)
        return;
    uint64_t prompted = net_ticks - NET_HZ;
    while (!usys(KSYS_GETC, 0, 0)) {
        if (net_ticks - prompted >= NET_HZ) {
            uprintf("net: waiting for a byte on the serial port\n");
            prompted = net_ticks;
        }
        usys(KSYS_IDLE, 0, 0);
    }
    uprintf("net: go\n");
}

/* =============================================================== roles */
struct ctx {
    struct netif *n;
    const struct net_config *c;
    uint8_t peer_mac[ETH_ALEN];
    bool peer_known;
    uint32_t arp_answered;
};

enum kind { K_OTHER, K_BAD, K_ARP, K_ECHO_REQ, K_ECHO_REPLY, K_UDP };
struct pkt {
    enum kind kind;
    const struct eth_hdr *eth;
    const struct ip_hdr *ip;
    const uint8_t *l4;
    unsigned l4len;
    const char *why; /* K_BAD */
};

static const uint8_t bcast[ETH_ALEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static bool timed_out(const struct ctx *x, uint32_t start)
{
    return net_rtc_elapsed - start >= x->c->timeout;
}

/* A free TX buffer; waits (up to ~5 s) while the ring is full. */
static uint8_t *tx_get(struct ctx *x)
{
    uint64_t t0 = net_ticks;
    uint8_t *b;
    while (!(b = x->n->tx_alloc(x->n))) {
        if (net_ticks - t0 > 5 * NET_HZ) {
            uprintf("FAIL: %s: TX ring stuck (no descriptor completed in 5 s)\n", x->n->name);
            return NULL;
        }
        x->n->wait(x->n);
    }
    return b;
}

static void tx_send(struct ctx *x, uint8_t *b, unsigned len)
{
    if (len < ETH_ZLEN) {
        memset(b + len, 0, ETH_ZLEN - len);
        len = ETH_ZLEN;
    }
    if (x->c->vlan) {
        /* The tag goes between the source MAC and the type (frames here are small). */
        memmove(b + 16, b + 12, len - 12);
        b[12] = 0x81;
        b[13] = 0x00;
        b[14] = (uint8_t)(x->c->vlan >> 8);
        b[15] = (uint8_t)x->c->vlan;
        len += 4;
    }
    x->n->tx_submit(x->n, len);
    x->n->tx_kick(x->n);
}

static uint8_t *eth_start(struct ctx *x, uint8_t *b, const uint8_t *dst, uint16_t type)
{
    struct eth_hdr *e = (struct eth_hdr *)b;
    memcpy(e->dst, dst, ETH_ALEN);
    memcpy(e->src, x->n->mac, ETH_ALEN);
    e->type = net_htons(type);
    return b + ETH_HLEN;
}

static bool send_arp(struct ctx *x, uint16_t op, const uint8_t *tha, uint32_t tpa)
{
    uint8_t *b = tx_get(x);
    if (!b)
        return false;
    struct arp_pkt *a = (struct arp_pkt *)eth_start(x, b, op == 1 ? bcast : tha, ETHERTYPE_ARP);
    a->htype = net_htons(1);
    a->ptype = net_htons(ETHERTYPE_IP);
    a->hlen = ETH_ALEN;
    a->plen = 4;
    a->op = net_htons(op);
    memcpy(a->sha, x->n->mac, ETH_ALEN);
    a->spa = x->c->ip;
    if (op == 1)
        memset(a->tha, 0, ETH_ALEN);
    else
        memcpy(a->tha, tha, ETH_ALEN);
    a->tpa = tpa;
    tx_send(x, b, ETH_HLEN + sizeof *a);
    return true;
}

static void ip_fill(struct ip_hdr *ip, uint32_t src, uint32_t dst, uint8_t proto, unsigned payload,
                    uint16_t id)
{
    ip->vihl = 0x45;
    ip->tos = 0;
    ip->len = net_htons((uint16_t)(sizeof *ip + payload));
    ip->id = net_htons(id);
    ip->frag = net_htons(0x4000); /* DF */
    ip->ttl = 64;
    ip->proto = proto;
    ip->csum = 0;
    ip->src = src;
    ip->dst = dst;
    ip->csum = net_csum(ip, sizeof *ip);
}

/* Classify a received frame; answers ARP requests for our address and learns
 * the peer's MAC from any ARP packet it sends. */
static struct pkt classify(struct ctx *x, const uint8_t *f, unsigned len)
{
    struct pkt p = {.kind = K_OTHER, .eth = (const struct eth_hdr *)f};
    if (len < ETH_HLEN)
        return (struct pkt){.kind = K_BAD, .why = "runt"};
    uint16_t type = net_ntohs(p.eth->type);
    unsigned hlen = ETH_HLEN;
    if (x->c->vlan) {
        /* VGT: only frames tagged with our VID are ours. */
        if (type != 0x8100 || len < ETH_HLEN + 4 || ((f[14] << 8 | f[15]) & 0xFFF) != x->c->vlan)
            return p;
        type = (uint16_t)(f[16] << 8 | f[17]);
        hlen += 4;
    }
    const uint8_t *l3 = f + hlen;
    unsigned l3len = len - hlen;
    if (type == ETHERTYPE_ARP) {
        const struct arp_pkt *a = (const struct arp_pkt *)l3;
        if (l3len < sizeof *a || net_ntohs(a->htype) != 1 || net_ntohs(a->ptype) != ETHERTYPE_IP ||
            a->hlen != 6 || a->plen != 4)
            return (struct pkt){.kind = K_BAD, .why = "bad ARP"};
        p.kind = K_ARP;
        uint16_t op = net_ntohs(a->op);
        if (x->c->peer && a->spa == x->c->peer && (op == 1 || op == 2)) {
            memcpy(x->peer_mac, a->sha, ETH_ALEN);
            x->peer_known = true;
        }
        if (op == 1 && x->c->ip && a->tpa == x->c->ip && x->c->role != ROLE_SNIFF) {
            uint8_t sha[ETH_ALEN];
            uint32_t spa = a->spa;
            memcpy(sha, a->sha, ETH_ALEN);
            if (x->arp_answered++ < 3) {
                char ips[16], macs[18];
                uprintf("arp: who-has %s tell %s (%s): answered\n", net_fmt_ip((char[16]){0}, x->c->ip),
                        net_fmt_ip(ips, spa), net_fmt_mac(macs, sha));
            }
            send_arp(x, 2, sha, spa);
        }
        return p;
    }
    if (type != ETHERTYPE_IP)
        return p;
    const struct ip_hdr *ip = (const struct ip_hdr *)l3;
    if (l3len < sizeof *ip || (ip->vihl >> 4) != 4 || (ip->vihl & 15) < 5)
        return (struct pkt){.kind = K_BAD, .why = "bad IPv4 header"};
    unsigned ihl = (ip->vihl & 15) * 4u, tot = net_ntohs(ip->len);
    if (tot < ihl || tot > l3len || l3len < ihl)
        return (struct pkt){.kind = K_BAD, .why = "bad IPv4 length"};
    if (net_csum(ip, ihl) != 0)
        return (struct pkt){.kind = K_BAD, .why = "bad IPv4 checksum"};
    if (x->c->ip && ip->dst != x->c->ip)
        return p;
    p.ip = ip;
    p.l4 = l3 + ihl;
    p.l4len = tot - ihl;
    if (ip->proto == IPPROTO_ICMP) {
        const struct icmp_echo *ic = (const struct icmp_echo *)p.l4;
        if (p.l4len < sizeof *ic)
            return (struct pkt){.kind = K_BAD, .why = "short ICMP"};
        if (net_csum(p.l4, p.l4len) != 0)
            return (struct pkt){.kind = K_BAD, .why = "bad ICMP checksum"};
        if (ic->type == 8 && ic->code == 0)
            p.kind = K_ECHO_REQ;
        else if (ic->type == 0 && ic->code == 0)
            p.kind = K_ECHO_REPLY;
    } else if (ip->proto == IPPROTO_UDP && p.l4len >= sizeof(struct udp_hdr)) {
        p.kind = K_UDP;
    }
    return p;
}

/* Resolve cfg.peer by ARP: a request every 200 ms for arp_secs seconds. */
static bool resolve(struct ctx *x)
{
    char ips[16], macs[18];
    uint64_t start = net_ticks, last = 0;
    bool sent = false;
    while (!x->peer_known) {
        uint64_t now = net_ticks;
        if (now - start >= (uint64_t)x->c->arp_secs * NET_HZ)
            break;
        if (!sent || now - last >= NET_HZ / 5) {
            if (!send_arp(x, 1, bcast, x->c->peer))
                return false;
            sent = true;
            last = now;
        }
        const uint8_t *f;
        unsigned len;
        bool any = false;
        while ((f = x->n->rx_peek(x->n, &len))) {
            classify(x, f, len);
            x->n->rx_release(x->n);
            any = true;
        }
        if (!any && !x->peer_known)
            x->n->wait(x->n);
    }
    if (!x->peer_known) {
        uprintf("arp: no reply from %s in %u s\n", net_fmt_ip(ips, x->c->peer), x->c->arp_secs);
        return false;
    }
    uprintf("arp: %s is at %s (%lu ms)\n", net_fmt_ip(ips, x->c->peer), net_fmt_mac(macs, x->peer_mac),
            (net_ticks - start) * (1000 / NET_HZ));
    return true;
}

#define ECHO_ID      0x4856
#define ECHO_PAYLOAD 56
static uint8_t echo_byte(unsigned seq, unsigned i) { return (uint8_t)((i * 7 + seq * 13) ^ 0x5a); }

static bool send_echo(struct ctx *x, uint16_t seq)
{
    uint8_t *b = tx_get(x);
    if (!b)
        return false;
    struct ip_hdr *ip = (struct ip_hdr *)eth_start(x, b, x->peer_mac, ETHERTYPE_IP);
    struct icmp_echo *ic = (struct icmp_echo *)(ip + 1);
    uint8_t *pl = (uint8_t *)(ic + 1);
    ic->type = 8;
    ic->code = 0;
    ic->csum = 0;
    ic->id = net_htons(ECHO_ID);
    ic->seq = net_htons(seq);
    for (unsigned i = 0; i < ECHO_PAYLOAD; i++)
        pl[i] = echo_byte(seq, i);
    ic->csum = net_csum(ic, sizeof *ic + ECHO_PAYLOAD);
    ip_fill(ip, x->c->ip, x->c->peer, IPPROTO_ICMP, sizeof *ic + ECHO_PAYLOAD, seq);
    tx_send(x, b, ETH_HLEN + sizeof *ip + sizeof *ic + ECHO_PAYLOAD);
    return true;
}

/* NULL if the reply is right, else why not. */
static const char *check_reply(const struct ctx *x, const struct pkt *p, uint16_t seq)
{
    const struct icmp_echo *ic = (const struct icmp_echo *)p->l4;
    if (p->ip->src != x->c->peer)
        return "from another address";
    if (memcmp(p->eth->src, x->peer_mac, ETH_ALEN) != 0)
        return "from another MAC";
    if (net_ntohs(ic->id) != ECHO_ID)
        return "wrong id";
    if (net_ntohs(ic->seq) != seq)
        return "wrong seq";
    if (p->l4len != sizeof *ic + ECHO_PAYLOAD)
        return "wrong length";
    const uint8_t *pl = (const uint8_t *)(ic + 1);
    for (unsigned i = 0; i < ECHO_PAYLOAD; i++)
        if (pl[i] != echo_byte(seq, i))
            return "payload differs";
    return NULL;
}

/* Answers ARP (through classify) and drops other frames until net_ticks reaches `until`. */
static void idle_until(struct ctx *x, uint64_t until)
{
    while (net_ticks < until) {
        const uint8_t *f;
        unsigned len;
        bool any = false;
        while ((f = x->n->rx_peek(x->n, &len))) {
            classify(x, f, len);
            x->n->rx_release(x->n);
            any = true;
        }
        if (!any)
            x->n->wait(x->n);
    }
}

static int role_ping(struct ctx *x)
{
    char ips[16];
    net_fmt_ip(ips, x->c->peer);
    if (!resolve(x))
        return 2;
    uint32_t ok = 0;
    for (uint32_t seq = 1; seq <= x->c->count; seq++) {
        uint64_t t0 = net_us(), start = net_ticks;
        if (!send_echo(x, (uint16_t)seq))
            return 3;
        const char *result = "timeout";
        bool done = false;
        while (!done && net_ticks - start < NET_HZ) {
            const uint8_t *f;
            unsigned len;
            bool any = false;
            while (!done && (f = x->n->rx_peek(x->n, &len))) {
                any = true;
                struct pkt p = classify(x, f, len);
                if (p.kind == K_ECHO_REPLY) {
                    const struct icmp_echo *ic = (const struct icmp_echo *)p.l4;
                    if (net_ntohs(ic->id) == ECHO_ID && net_ntohs(ic->seq) < seq) {
                        /* late duplicate of an earlier one: ignore */
                    } else {
                        result = check_reply(x, &p, (uint16_t)seq);
                        done = true;
                    }
                } else if (p.kind == K_BAD) {
                    uprintf("ping: dropped a frame: %s\n", p.why);
                }
                x->n->rx_release(x->n);
            }
            if (!done && !any)
                x->n->wait(x->n);
        }
        if (done && !result) {
            ok++;
            uprintf("ping: %s seq=%u ok\n", ips, seq);
            uprintf("ping: rtt %lu us\n", net_us() - t0);
        } else {
            uprintf("ping: %s seq=%u FAILED: %s\n", ips, seq, result ? result : "?");
        }
        if (x->c->interval_ms && seq < x->c->count)
            idle_until(x, start + (uint64_t)x->c->interval_ms * NET_HZ / 1000);
    }
    uprintf("ping: %u/%u replies\n", ok, x->c->count);
    while (!x->n->tx_done(x->n))
        x->n->wait(x->n);
    return ok == x->c->count ? 0 : 4;
}

static bool answer_echo(struct ctx *x, const struct pkt *p)
{
    const struct icmp_echo *rq = (const struct icmp_echo *)p->l4;
    unsigned l4len = p->l4len;
    if (l4len > ETH_FRAME_MAX - ETH_HLEN - sizeof(struct ip_hdr))
        return false;
    uint8_t *b = tx_get(x);
    if (!b)
        return false;
    struct ip_hdr *ip = (struct ip_hdr *)eth_start(x, b, p->eth->src, ETHERTYPE_IP);
    struct icmp_echo *ic = (struct icmp_echo *)(ip + 1);
    memcpy(ic, rq, l4len);
    ic->type = 0;
    ic->csum = 0;
    ic->csum = net_csum(ic, l4len);
    ip_fill(ip, x->c->ip, p->ip->src, IPPROTO_ICMP, l4len, net_ntohs(p->ip->id));
    tx_send(x, b, ETH_HLEN + sizeof *ip + l4len);
    return true;
}

static int role_respond(struct ctx *x)
{
    uint32_t start = net_rtc_elapsed, answered = 0;
    uint64_t linger = 0;
    char ips[16];
    while (answered < x->c->count || net_ticks - linger < NET_HZ / 5 || !x->n->tx_done(x->n)) {
        if (answered < x->c->count && timed_out(x, start)) {
            uprintf("respond: timeout after %u s: answered %u/%u echo requests\n", x->c->timeout,
                    answered, x->c->count);
            return 5;
        }
        const uint8_t *f;
        unsigned len;
        bool any = false;
        while ((f = x->n->rx_peek(x->n, &len))) {
            any = true;
            struct pkt p = classify(x, f, len);
            if (p.kind == K_ECHO_REQ && answered < x->c->count) {
                const struct icmp_echo *ic = (const struct icmp_echo *)p.l4;
                uprintf("respond: echo seq=%u from %s\n", net_ntohs(ic->seq), net_fmt_ip(ips, p.ip->src));
                if (!answer_echo(x, &p))
                    return 3;
                if (++answered == x->c->count)
                    linger = net_ticks; /* keep answering ARP briefly, let TX drain */
            } else if (p.kind == K_BAD) {
                uprintf("respond: dropped a frame: %s\n", p.why);
            }
            x->n->rx_release(x->n);
        }
        if (!any)
            x->n->wait(x->n);
    }
    uprintf("respond: answered %u echo requests\n", answered);
    return 0;
}

static int role_sniff(struct ctx *x)
{
    uint32_t start = net_rtc_elapsed, frames = 0;
    char a[18], b[18];
    bool stop = x->c->stop_serial;
    if (stop)
        uprintf("sniff: listening until a byte arrives on the serial port\n");
    else
        uprintf("sniff: listening for %u s\n", x->c->timeout);
    while (stop ? !usys(KSYS_GETC, 0, 0) : !timed_out(x, start)) {
        const uint8_t *f;
        unsigned len;
        bool any = false;
        while ((f = x->n->rx_peek(x->n, &len))) {
            any = true;
            if (frames++ < 8 && len >= ETH_HLEN) {
                const struct eth_hdr *e = (const struct eth_hdr *)f;
                uprintf("sniff: frame %u: %s > %s type 0x%04x len %u\n", frames, net_fmt_mac(a, e->src),
                        net_fmt_mac(b, e->dst), net_ntohs(e->type), len);
            }
            x->n->rx_release(x->n);
        }
        if (!any)
            x->n->wait(x->n);
    }
    uprintf("sniff: %u frames\n", frames);
    return 0;
}

#define UDP_HLEN (ETH_HLEN + 20 + 8)

/* The flood's payload pattern: ramp[k] = k & 0xFF, so payload bytes 4.. of frame seq are
 * ramp + ((seq + 4) & 0xFF). */
static uint8_t ramp[256 + NET_FRAME_MAX_JUMBO];

static void ramp_init(void)
{
    for (unsigned i = 0; i < sizeof ramp; i++)
        ramp[i] = (uint8_t)i;
}

static unsigned max_frame(const struct ctx *x)
{
    return x->n->max_frame ? x->n->max_frame : ETH_FRAME_MAX;
}

/* The sink's acknowledgement: its frame count, to the flood that sent `f`. */
static void send_ack(struct ctx *x, const uint8_t *f, uint32_t frames)
{
    const struct eth_hdr *e = (const struct eth_hdr *)f;
    const struct ip_hdr *sip = (const struct ip_hdr *)(f + ETH_HLEN);
    uint8_t *b = x->n->tx_alloc(x->n);
    if (!b)
        return; /* the next acknowledgement carries the count */
    struct ip_hdr *ip = (struct ip_hdr *)eth_start(x, b, e->src, ETHERTYPE_IP);
    struct udp_hdr *u = (struct udp_hdr *)(ip + 1);
    u->sport = net_htons(NET_FLOOD_DPORT);
    u->dport = net_htons(NET_FLOOD_SPORT);
    u->len = net_htons(sizeof *u + 4);
    u->csum = 0;
    memcpy(u + 1, &frames, 4);
    ip_fill(ip, x->c->ip, sip->src, IPPROTO_UDP, sizeof *u + 4, 0);
    memset(b + UDP_HLEN + 4, 0, ETH_ZLEN - UDP_HLEN - 4);
    x->n->tx_submit(x->n, ETH_ZLEN);
    x->n->tx_kick(x->n);
}

static int role_flood(struct ctx *x)
{
    if (!resolve(x))
        return 2;
    const unsigned size = x->c->size, plen = size - UDP_HLEN;
    if (size > max_frame(x)) {
        uprintf("FAIL: flood: size=%u is larger than the %s driver's %u-byte frames\n", size, x->n->name,
                max_frame(x));
        return 3;
    }
    ramp_init();
    uint8_t tmpl[UDP_HLEN];
    struct ip_hdr *ip = (struct ip_hdr *)eth_start(x, tmpl, x->peer_mac, ETHERTYPE_IP);
    struct udp_hdr *u = (struct udp_hdr *)(ip + 1);
    u->sport = net_htons(NET_FLOOD_SPORT);
    u->dport = net_htons(NET_FLOOD_DPORT);
    u->len = net_htons((uint16_t)(sizeof *u + plen));
    u->csum = 0; /* none (allowed for IPv4) */
    ip_fill(ip, x->c->ip, x->c->peer, IPPROTO_UDP, sizeof *u + plen, 0);

    uint32_t sent = 0, acked = 0, kicks = 0, waits = 0, window_waits = 0;
    uint64_t t0 = net_us(), last_ack = net_ticks;
    while (sent < x->c->count) {
        uint32_t queued = 0;
        uint8_t *b;
        while (sent < x->c->count && (!x->c->window || sent - acked < x->c->window) &&
               (b = x->n->tx_alloc(x->n))) {
            memcpy(b, tmpl, UDP_HLEN);
            if (x->c->flows > 1) {
                struct udp_hdr *bu = (struct udp_hdr *)(b + ETH_HLEN + 20);
                bu->sport = net_htons((uint16_t)(NET_FLOOD_SPORT + 1 + sent % x->c->flows));
            }
            memcpy(b + UDP_HLEN, &sent, 4);
            memcpy(b + UDP_HLEN + 4, ramp + ((sent + 4) & 0xFF), plen - 4);
            x->n->tx_submit(x->n, size);
            sent++;
            queued++;
            if (x->c->progress && sent % x->c->progress == 0)
                uprintf("flood: %u sent\n", sent);
        }
        if (queued) {
            x->n->tx_kick(x->n);
            kicks++;
        } else if (x->c->window && sent - acked >= x->c->window) {
            window_waits++;
            pause();
            if (net_ticks - last_ack > 10 * NET_HZ) {
                uprintf("FAIL: flood: no acknowledgement from the sink in 10 s (%u sent, %u acknowledged)\n",
                        sent, acked);
                return 3;
            }
        } else {
            /* ring full: the device is still sending */
            for (unsigned i = 0; i < 64 && !(b = x->n->tx_alloc(x->n)); i++)
                pause();
            if (!b) {
                x->n->wait(x->n);
                waits++;
            }
        }
        /* answer ARP, take acknowledgements, without blocking */
        const uint8_t *f;
        unsigned len;
        while ((f = x->n->rx_peek(x->n, &len))) {
            struct pkt p = classify(x, f, len);
            if (p.kind == K_UDP && p.l4len >= 12 &&
                net_ntohs(((const struct udp_hdr *)p.l4)->dport) == NET_FLOOD_SPORT) {
                uint32_t a;
                memcpy(&a, p.l4 + 8, 4);
                if (a - acked < 0x80000000u && a <= sent) {
                    acked = a;
                    last_ack = net_ticks;
                }
            }
            x->n->rx_release(x->n);
        }
    }
    uint64_t t1 = net_us();
    uint64_t d0 = net_ticks;
    while (!x->n->tx_done(x->n)) {
        if (net_ticks - d0 > 5 * NET_HZ) {
            uprintf("FAIL: flood: TX did not drain\n");
            return 3;
        }
        x->n->wait(x->n);
    }
    uint64_t us = net_us() - t0;
    uprintf("flood: %u frames in %lu ms\n", sent, us / 1000);
    uprintf("flood: queued in %lu us, drained in %lu us, %u kicks, %u waits\n", t1 - t0, us, kicks, waits);
    uprintf("flood: %u-byte frames, %u flows, window %u (%u window waits)\n", size, x->c->flows, x->c->window,
            window_waits);
    return 0;
}

/* Sequence numbers seen, for duplicates and gaps (streams up to 2^20 frames). */
static uint8_t seen[1u << 17];

static int role_sink(struct ctx *x)
{
    uint32_t start = net_rtc_elapsed, frames = 0, other = 0, bad = 0, dups = 0, acked = 0;
    uint64_t first = 0, last = 0, last_tick = 0, last_ack_tick = 0, bytes = 0;
    const uint8_t *last_flood = NULL;
    static uint8_t last_hdr[UDP_HLEN];
    uint32_t ack_every = x->c->window / 4 ? x->c->window / 4 : 1;
    ramp_init();
    memset(seen, 0, sizeof seen);
    while (frames < x->c->count) {
        const uint8_t *f;
        unsigned len;
        bool any = false;
        while ((f = x->n->rx_peek(x->n, &len))) {
            any = true;
            struct pkt p = classify(x, f, len);
            if (p.kind == K_UDP && net_ntohs(((const struct udp_hdr *)p.l4)->dport) == NET_FLOOD_DPORT) {
                last = rdtsc();
                if (!frames++)
                    first = last;
                bytes += len;
                uint32_t seq;
                unsigned plen = p.l4len - 8;
                memcpy(&seq, p.l4 + 8, 4);
                if (plen < 4 || memcmp(p.l4 + 12, ramp + ((seq + 4) & 0xFF), plen - 4) != 0) {
                    if (!bad++)
                        uprintf("sink: frame seq %u (%u bytes) has wrong content\n", seq, len);
                } else if (seq < 8 * sizeof seen) {
                    if (seen[seq >> 3] & (1u << (seq & 7)))
                        dups++;
                    seen[seq >> 3] |= (uint8_t)(1u << (seq & 7));
                }
                memcpy(last_hdr, f, UDP_HLEN);
                last_flood = last_hdr;
            } else if (p.kind != K_ARP) {
                other++;
            }
            x->n->rx_release(x->n);
            if (x->c->window && frames - acked >= ack_every) {
                send_ack(x, last_hdr, frames);
                acked = frames;
            }
        }
        if (any) {
            last_tick = net_ticks;
            continue;
        }
        if (x->c->window && last_flood && net_ticks - last_tick >= 1 &&
            (frames != acked || net_ticks - last_ack_tick >= NET_HZ / 10)) {
            /* the stream paused: the flood may be waiting for us (or lost our last
             * acknowledgement, e.g. while it was suspended) */
            send_ack(x, last_flood, frames);
            acked = frames;
            last_ack_tick = net_ticks;
        }
        if (frames && net_ticks - last_tick > (uint64_t)x->c->idle * NET_HZ)
            break; /* the flood is over (some frames were lost) */
        if (timed_out(x, start))
            break;
        /* Sleep only until the flood starts; then busy-poll in ring 3: waking
         * through the (emulated, on PVM) kernel takes longer than a burst
         * takes to fill the ring. net_ticks still advances (PIT). */
        if (!frames)
            x->n->wait(x->n);
        else
            pause();
    }
    if (x->c->window && last_flood)
        send_ack(x, last_flood, frames);
    uint64_t us = frames > 1 ? (last - first) * 1000 / net_tsc_khz : 0;
    uint32_t missing = 0;
    uint32_t span = x->c->count < 8 * sizeof seen ? x->c->count : 8 * sizeof seen;
    for (uint32_t s = 0; s < span; s++)
        if (!(seen[s >> 3] & (1u << (s & 7))))
            missing++;
    uprintf("sink: %u frames in %lu ms\n", frames, us / 1000);
    uprintf("sink: first-to-last %lu us, %lu frames/s, lost %u of %u, %u other frames\n", us,
            us ? (uint64_t)(frames - 1) * 1000000 / us : 0, x->c->count - frames, x->c->count, other);
    uprintf("sink: verified %lu bytes, %lu MB/s, %u bad, %u duplicate, %u missing\n", bytes,
            us ? bytes / us : 0, bad, dups, missing);
    return frames == x->c->count && !bad && !dups && !missing ? 0 : 6;
}

int net_run(struct netif *n, const struct net_config *c)
{
    static const char *const names[] = {"none", "ping", "respond", "sniff", "flood", "sink", "info"};
    struct ctx x = {.n = n, .c = c};
    char ips[16], macs[18];
    uprintf("net: %s mac %s ip %s role %s\n", n->name, net_fmt_mac(macs, n->mac), net_fmt_ip(ips, c->ip),
            names[c->role]);
    int r;
    switch (c->role) {
    case ROLE_PING: r = role_ping(&x); break;
    case ROLE_RESPOND: r = role_respond(&x); break;
    case ROLE_SNIFF: r = role_sniff(&x); break;
    case ROLE_FLOOD: r = role_flood(&x); break;
    case ROLE_SINK: r = role_sink(&x); break;
    default: r = 0; break;
    }
    if (n->stats)
        n->stats(n);
    return r;
}
