/* The parts of the Linux packet-socket, netlink and TUN/TAP headers Swift cannot
 * import through Glibc: the structs of <linux/if_packet.h> and <linux/rtnetlink.h>,
 * and the request numbers built with _IOW macros. Nothing else lives here. */
#ifndef CLINUXNET_H
#define CLINUXNET_H
#include <stdint.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <asm/ioctl.h>

/* <linux/if_tun.h> would pull in <linux/if.h>, which clashes with Glibc's <net/if.h>. */
static const unsigned long CLN_TUNSETIFF = _IOW('T', 202, int);
static const unsigned int CLN_IFF_TAP = 0x0002;
static const unsigned int CLN_IFF_NO_PI = 0x1000;
static const unsigned int CLN_IFF_LOWER_UP = 0x10000;   /* IFF_LOWER_UP: carrier */
static const int CLN_PACKET_IGNORE_OUTGOING = 23;       /* Linux 4.20 */
#endif
