/*
 * Shared networking for test guests: a tiny Ethernet/ARP/IPv4/ICMP/UDP stack,
 * ring-3 -> kernel calls, a 100 Hz time base, and the test roles (ping,
 * respond, sniff, flood, sink) written against a NIC-independent `struct netif`.
 *
 * Execution model (see guests/README.md, "Quirks of the PVM host"): kernel
 * mode is emulated (~2 M instr/s), ring 3 is native. So a NIC driver does its
 * register work (a few port/MMIO accesses per batch) in kernel mode, behind
 * `usys()` calls, and everything per-frame -- descriptor rings, buffers, the
 * protocol -- runs in ring 3, which can touch all guest RAM (identity map, U/S).
 *
 * Typical guest:
 *   kernel:  probe + reset the NIC, net_time_init(), ksys_init(),
 *            ksys_register(...) the driver's calls, install its IRQ handler,
 *            then run_user(app, user_stack_top)
 *   ring 3:  net_parse_config(&cfg), set up rings, return net_run(&nif, &cfg)
 */
#pragma once
#include "rt.h"

/* ------------------------------------------------------------ byte order */
static inline uint16_t net_htons(uint16_t v) { return __builtin_bswap16(v); }
static inline uint32_t net_htonl(uint32_t v) { return __builtin_bswap32(v); }
#define net_ntohs net_htons
#define net_ntohl net_htonl

/* ---------------------------------------------------------- wire formats */
#define ETH_ALEN      6
#define ETH_HLEN      14
#define ETH_ZLEN      60   /* minimum frame without FCS */
#define ETH_FRAME_MAX 1514
#define NET_FRAME_MAX_JUMBO 9014 /* a 9000-byte MTU */
#define ETHERTYPE_IP  0x0800
#define ETHERTYPE_ARP 0x0806
#define IPPROTO_ICMP  1
#define IPPROTO_UDP   17

struct __attribute__((packed)) eth_hdr {
    uint8_t dst[ETH_ALEN], src[ETH_ALEN];
    uint16_t type; /* network order */
};
struct __attribute__((packed)) arp_pkt {
    uint16_t htype, ptype;
    uint8_t hlen, plen;
    uint16_t op;
    uint8_t sha[ETH_ALEN];
    uint32_t spa;
    uint8_t tha[ETH_ALEN];
    uint32_t tpa;
};
struct __attribute__((packed)) ip_hdr {
    uint8_t vihl, tos;
    uint16_t len, id, frag;
    uint8_t ttl, proto;
    uint16_t csum;
    uint32_t src, dst;
};
struct __attribute__((packed)) icmp_echo {
    uint8_t type, code;
    uint16_t csum, id, seq;
};
struct __attribute__((packed)) udp_hdr {
    uint16_t sport, dport, len, csum;
};

/* Internet checksum of n bytes; store the result as-is (it is already in
 * network order). Verifying: the checksum over data including its checksum
 * field is 0. */
uint16_t net_csum(const void *data, size_t n);

/* IPv4 addresses are kept in network order (as on the wire). */
bool net_parse_ip(const char *s, uint32_t *ip);
/* "a.b.c.d" / "xx:xx:xx:xx:xx:xx" into buf (>= 16 / >= 18 bytes); returns buf. */
char *net_fmt_ip(char *buf, uint32_t ip);
char *net_fmt_mac(char *buf, const uint8_t *mac);

/* Command-line "key=value" words. */
bool net_arg(const char *key, char *val, size_t n); /* false if absent */
uint64_t net_arg_u64(const char *key, uint64_t def);

/* ------------------------------------------------ ring-3 -> kernel calls */
/*
 * `int3` is the gate: on the PVM host it is one of the two vectors ring 3 can
 * raise directly (an `int $0x80` arrives as #UD and is emulated at extra cost),
 * and ksys_init() makes its IDT gate DPL3 so it works the same on VT-x/AMD-V.
 * RAX = call number, RDI/RSI = arguments, RAX = result. Calls run in kernel
 * mode with IF=0 (keep them short); KSYS_IDLE sleeps until the next interrupt.
 */
typedef uint64_t (*ksys_fn)(uint64_t a0, uint64_t a1);
#define KSYS_MAX   16
#define KSYS_PRINT 0  /* (buf, len): write to COM1 */
#define KSYS_IDLE  1  /* (): sti; hlt; cli -- returns after one interrupt */
#define KSYS_GETC  2  /* (): 0x100 | the next COM1 byte, or 0 when none is waiting */
#define KSYS_DRIVER 4 /* first number free for drivers */
void ksys_init(void);                           /* kernel */
void ksys_register(unsigned nr, ksys_fn fn);    /* kernel */
static inline uint64_t usys(unsigned nr, uint64_t a0, uint64_t a1)
{
    uint64_t ret;
    __asm__ volatile("int3" : "=a"(ret) : "a"((uint64_t)nr), "D"(a0), "S"(a1) : "memory");
    return ret;
}
/* printf from ring 3: formats natively, prints in one kernel call. */
int uprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ time */
#define NET_HZ 100
extern volatile uint64_t net_ticks;       /* PIT ticks at NET_HZ */
extern volatile uint32_t net_rtc_elapsed; /* RTC seconds seen to change since net_time_init */
extern uint64_t net_tsc_khz;              /* calibrated against the PIT */
/* Kernel, IF=0: PIT at NET_HZ on IRQ0 (sampling the RTC every 100 ms) and
 * TSC calibration (~100 ms). Leaves IRQ0 unmasked and IF=0. */
void net_time_init(void);
uint64_t net_us(void); /* microseconds since net_time_init (TSC; callable in ring 3) */

/* ----------------------------------------------------- NIC abstraction */
/* All callbacks run in ring 3. */
struct netif {
    const char *name;
    uint8_t mac[ETH_ALEN];
    /* Oldest received good frame (without FCS), or NULL. Stays valid until rx_release. */
    const uint8_t *(*rx_peek)(struct netif *n, unsigned *len);
    void (*rx_release)(struct netif *n);
    /* A free TX buffer (>= 1536 bytes) or NULL when the ring is full. */
    uint8_t *(*tx_alloc)(struct netif *n);
    /* Hand the buffer from tx_alloc (len bytes, padded to ETH_ZLEN by the
     * caller or driver) to the device; the device is told in tx_kick. */
    void (*tx_submit)(struct netif *n, unsigned len);
    void (*tx_kick)(struct netif *n);
    /* Every submitted frame has completed. */
    bool (*tx_done)(struct netif *n);
    /* Sleep until a frame arrives, a TX completes or the next tick. */
    void (*wait)(struct netif *n);
    /* Driver counters, printed at the end (may be NULL). */
    void (*stats)(struct netif *n);
    /* Largest frame tx_alloc buffers and the receive path take; 0 = ETH_FRAME_MAX. */
    unsigned max_frame;
};

enum net_role { ROLE_NONE, ROLE_PING, ROLE_RESPOND, ROLE_SNIFF, ROLE_FLOOD, ROLE_SINK, ROLE_INFO };
struct net_config {
    enum net_role role;
    uint32_t ip, peer;      /* network order */
    uint32_t count;         /* echos / frames */
    uint32_t timeout;       /* RTC seconds */
    uint32_t arp_secs;      /* how long to retry ARP (every 200 ms) */
    uint32_t interval_ms;   /* ping: from one echo request to the next (0: back to back) */
    uint32_t ring;          /* descriptors per ring (driver hint; power of 2) */
    bool promisc;           /* sniff */
    bool go_serial;         /* go=serial: start the NIC only after a byte arrives on COM1 */
    bool stop_serial;       /* stop=serial: sniff until the next COM1 byte (no timeout) */
    uint32_t size;          /* flood: frame length without FCS (60..9014, default 60) */
    uint32_t flows;         /* flood: UDP source ports used in turn (default 1) */
    uint32_t window;        /* flood/sink: frames in flight before the flood waits for the
                               sink's acknowledgement (0: no flow control) */
    uint32_t progress;      /* flood: print "flood: N sent" every N frames (0: never) */
    uint32_t idle;          /* sink: seconds without frames that end a started stream (2) */
    uint16_t vlan;          /* ping/respond: 802.1Q VID 1..4094 the guest tags its frames
                               with and requires on received ones (VGT); 0: untagged */
};
/* Parses ip= peer= role= count= timeout= arp= ring= go= stop= interval= vlan=; prints and
 * returns false on a bad command line. Callable in either ring. */
bool net_parse_config(struct net_config *c);
/* Ring 3, before the driver starts the NIC: with go=serial, prints
 * "net: waiting for a byte on the serial port" every second until a byte
 * arrives (so a host that connects late still sees the prompt), then "net: go".
 * This lets a test order guests by events: nothing is sent before the go. */
void net_await_go(const struct net_config *c);
/* Runs the role (ring 3). Returns the guest exit code. */
int net_run(struct netif *n, const struct net_config *c);

/* UDP ports of the flood/sink pair. The flood's frames carry their sequence number in
 * the first 4 payload bytes and then the bytes (seq + i) & 0xFF at payload offset i; the
 * sink checks every byte. With window=, the sink acknowledges (a UDP frame from the
 * DPORT to the SPORT whose payload is its frame count) every window/4 frames and when
 * the stream pauses. Source ports are SPORT + k for the k-th of flows= flows. */
#define NET_FLOOD_SPORT 9000
#define NET_FLOOD_DPORT 9001
