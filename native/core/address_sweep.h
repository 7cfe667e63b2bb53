/*
 * Addresses CAPA put on an interface (capa-run's library, capa-socket; the kernel keeps them
 * marked CAPA_NL_ADDR_PROTO) come off again once nothing uses them: when a capa-run program or
 * a capa-socket process that added one ends, it looks at the CAPA addresses of the interface and
 * removes each that no socket of this host holds, if an earlier look at least idle_ms before
 * found it unused too. The looks are kept per network namespace and interface in a small file in
 * the temporary folder ($TMPDIR, else /tmp). The decision is pure; netlink, the socket table and
 * the file are the shell around it.
 */
#ifndef CAPA_ADDRESS_SWEEP_H
#define CAPA_ADDRESS_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "netlink.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How long an address must have been seen unused before it comes off (capa-run --address-idle). */
#define CAPA_ADDRESS_IDLE_MS 60000
/* The most CAPA addresses of one interface a look considers. */
#define CAPA_SWEEP_MAX 1024

/* When a look first found an address unused. An address removed and added again since (or
 * a namespace that reuses an old one's number) has another creation time: no record of it. */
struct capa_idle_record {
  int family; /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  uint32_t created; /* IFA_CACHEINFO cstamp */
  int64_t since_ms;
};

/* Pure. For each of the n marked addresses (in_use[i]: a socket holds it), remove[i] = 1 when
 * an earlier record found it unused at least idle_ms before now_ms; the records for the next
 * look (the unused addresses kept) go to next, which has room for n. Returns their number. */
size_t capa_sweep_decide(const struct capa_nl_address *marked, const int *in_use, size_t n,
                         const struct capa_idle_record *earlier, size_t n_earlier, int64_t now_ms, int64_t idle_ms,
                         int *remove, struct capa_idle_record *next);

/* One look at ifname: returns how many addresses it removed, or -errno (-EPERM without
 * CAP_NET_ADMIN, -ENODEV without such an interface). */
int capa_sweep_addresses(const char *ifname, int64_t idle_ms);

#ifdef __cplusplus
}
#endif

#endif
