/*
 * CAPA terminal side: configure the allocated source address on an
 * interface through rtnetlink. Plain C99 + Linux headers, no global state:
 * every call opens, uses and closes its own NETLINK_ROUTE socket, so calls
 * are safe from any thread.
 *
 * `family` is AF_INET or AF_INET6; `addr` holds 4 or 16 bytes in network
 * order. Returns -errno on failure (-ENODEV: no such interface, -EPERM:
 * CAP_NET_ADMIN missing, -EAFNOSUPPORT: bad family, -EINVAL: bad prefix).
 */
#ifndef CAPA_NETLINK_H
#define CAPA_NETLINK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if `addr` is configured on `ifname` (any prefix length), 0 if not. */
int capa_nl_addr_check(const char *ifname, int family, const uint8_t *addr);

/* IFA_PROTO (the address's "protocol", Linux 6.1+) of the addresses CAPA adds,
 * so they can be told from the ones an operator configured. */
#define CAPA_NL_ADDR_PROTO 0xca

/* Adds addr/prefix to `ifname` (RTM_NEWADDR), marked CAPA_NL_ADDR_PROTO.
 * Idempotent: 0 when already there. Returns once the kernel delivers the
 * address locally (IPv6 installs that route after the ack; the wait is
 * bounded at 500 ms). IPv6 addresses skip duplicate address detection so they
 * are usable at once (the gateway, not the link, guarantees uniqueness). */
int capa_nl_addr_add(const char *ifname, int family, const uint8_t *addr,
                     unsigned prefix);

/* Removes addr/prefix from `ifname` (RTM_DELADDR); -EADDRNOTAVAIL if absent. */
int capa_nl_addr_del(const char *ifname, int family, const uint8_t *addr,
                     unsigned prefix);

/* An address as capa_nl_addr_list_capa reports it. */
struct capa_nl_address {
  int family; /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  unsigned prefix;
  uint32_t created; /* when it was added, 1/100 s since boot (IFA_CACHEINFO cstamp) */
};

/* The addresses on `ifname` that CAPA added (CAPA_NL_ADDR_PROTO), both
 * families: stores the first `max` in out and returns how many there are, or
 * -errno. */
int capa_nl_addr_list_capa(const char *ifname, struct capa_nl_address *out, int max);

/* 1 if the kernel delivers packets for `addr` locally (a local route, e.g.
 * any 127/8 address or one configured on any interface), 0 if not. Needs no
 * privileges. */
int capa_nl_addr_is_local(int family, const uint8_t *addr);

#ifdef __cplusplus
}
#endif

#endif
