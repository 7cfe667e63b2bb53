/* Pinning app sockets: see terminal.h. */
#define _GNU_SOURCE
#include "terminal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "../core/netlink.h"
#include "../core/pin.h"
#include "allocations.h"
#include "config.h"
#include "log.h"
#include "lookup.h"
#include "pins.h"
#include "release.h"
#include "supervisor_link.h"

/* Allocations tried per connect when the allocated port is taken locally (EADDRINUSE). */
#define MAX_PIN_TRIES 3

struct destination {
  struct capa_address ip;  /* v4-mapped IPv6 destinations as IPv4 */
  uint16_t port;
  int sock_family;    /* AF_INET or AF_INET6: the socket's family */
  int mapped;         /* an AF_INET6 socket talking to a v4-mapped address */
};

/* An AF_INET/AF_INET6 socket address as (ip, port), v4-mapped IPv6 as IPv4; 0 for others. */
static int read_sockaddr(const struct sockaddr *sa, socklen_t len, struct capa_address *ip, uint16_t *port, int *mapped) {
  memset(ip, 0, sizeof *ip);
  *mapped = 0;
  if (sa == NULL) return 0;
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    ip->family = 4;
    memcpy(ip->addr, &sin->sin_addr, 4);
    *port = ntohs(sin->sin_port);
    return 1;
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    *mapped = memcmp(&sin6->sin6_addr, CAPA_V4_MAPPED, sizeof CAPA_V4_MAPPED) == 0;
    ip->family = *mapped ? 4 : 6;
    memcpy(ip->addr, sin6->sin6_addr.s6_addr + (*mapped ? 12 : 0), *mapped ? 4 : 16);
    *port = ntohs(sin6->sin6_port);
    return 1;
  }
  return 0;
}

/* 1 for an AF_INET/AF_INET6 address with a port and a specified address. */
static int read_destination(const struct sockaddr *sa, socklen_t len, struct destination *d) {
  static const uint8_t zero[16];
  memset(d, 0, sizeof *d);
  if (!read_sockaddr(sa, len, &d->ip, &d->port, &d->mapped)) return 0;
  d->sock_family = sa->sa_family;
  return d->port != 0 && memcmp(d->ip.addr, zero, d->ip.family == 4 ? 4 : 16) != 0;
}

/* The socket's local (address, port); 0 when it is not an AF_INET/AF_INET6 socket. */
static int local_address(int fd, struct capa_address *ip, uint16_t *port) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int mapped;
  return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && read_sockaddr((struct sockaddr *)&ss, len, ip, port, &mapped);
}

/* Whether the descriptor still is the socket we pinned: bound to its (aOG, pA). */
static int pin_is_live(int fd, const struct capa_pin *p) {
  struct capa_address ip;
  uint16_t port = 0;
  const struct capa_record *r = &p->alloc.record;
  return local_address(fd, &ip, &port) && port == r->port && ip.family == r->family &&
         memcmp(ip.addr, r->addr, r->family == 4 ? 4 : 16) == 0;
}

/* Multicast, broadcast and link-local destinations never leave the link: no gateway, no CAPA. */
static int link_only(const struct capa_address *ip) {
  const uint8_t *a = ip->addr;
  if (ip->family == 4) return (a[0] & 0xf0) == 224 || (a[0] == 169 && a[1] == 254) || (a[0] & a[1] & a[2] & a[3]) == 255;
  return a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/* IPPROTO_TCP or IPPROTO_UDP, 0 for anything CAPA does not pin (raw, ICMP, SCTP, MPTCP...). */
static int socket_proto(int fd) {
  int proto = 0;
  socklen_t len = sizeof proto;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0) return 0;
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP ? proto : 0;
}

static const char *proto_name(int proto) { return proto == IPPROTO_UDP ? "udp" : "tcp"; }

static void log_pin(const struct capa_config *cfg, int fd, const struct capa_allocation *a, const struct destination *d) {
  char aog[CAPA_ADDRESS_TEXT_MAX], aob[CAPA_ADDRESS_TEXT_MAX];
  capa_address_format(a->record.family, a->record.addr, aog, sizeof aog);
  capa_ip_format(&d->ip, aob, sizeof aob);
  capa_log_event(cfg, "pin", "\"fd\":%d,\"proto\":%d,\"qname\":\"%s\",\"aOG\":\"%s\",\"pA\":%u,\"aOB\":\"%s\",\"pB\":%u", fd,
                 a->record.proto, a->qname, aog, (unsigned)a->record.port, aob, (unsigned)d->port);
}

static void log_direct(const struct capa_config *cfg, const char *why, int fd, int proto, const struct destination *d) {
  char aob[CAPA_ADDRESS_TEXT_MAX];
  capa_ip_format(&d->ip, aob, sizeof aob);
  capa_log_event(cfg, "direct", "\"why\":\"%s\",\"fd\":%d,\"proto\":%d,\"aOB\":\"%s\",\"pB\":%u", why, fd, proto, aob,
                 (unsigned)d->port);
}

/* Puts aOG on CAPA_INTERFACE unless the kernel already treats it as local (all of 127/8 is). */
static int configure(const struct capa_config *cfg, const struct capa_allocation *a) {
  int family = a->record.family == 4 ? AF_INET : AF_INET6;
  if (cfg->interface[0] == '\0' || capa_nl_addr_is_local(family, a->record.addr) == 1) return 0;
  return capa_nl_addr_add(cfg->interface, family, a->record.addr, a->record.family == 4 ? 32 : 128);
}

/* Binds the socket to its allocation; on failure hands the allocation back. `quiet_in_use`: an
 * EADDRINUSE will be retried with another allocation, so it is not worth a notice. */
static int pin(const struct capa_config *cfg, int fd, const struct destination *d, const struct capa_allocation *a,
               int quiet_in_use) {
  uint8_t source[16];
  char aog[CAPA_ADDRESS_TEXT_MAX];
  enum capa_pin_step step = CAPA_STEP_NONE;
  capa_address_format(a->record.family, a->record.addr, aog, sizeof aog);
  int rc = configure(cfg, a);
  if (rc < 0) {
    capa_notice(cfg, "cannot put CAPA address %s on interface %s (%s); not connecting", aog, cfg->interface, strerror(-rc));
  } else {
    /* An AF_INET6 socket reaching an IPv4 destination binds the v4-mapped form of aOG. */
    memcpy(source, CAPA_V4_MAPPED, sizeof CAPA_V4_MAPPED);
    memcpy(d->mapped ? source + 12 : source, a->record.addr, a->record.family == 4 ? 4 : 16);
    rc = capa_pin_fd(fd, d->sock_family, source, a->record.port, NULL, &step);
    const char *option = capa_pin_step_option(step);
    if (rc < 0 && !(rc == -EADDRINUSE && quiet_in_use)) {
      capa_notice(cfg, "cannot pin a socket to its CAPA allocation %s:%u (%s failed: %s); not connecting it", aog,
                  (unsigned)a->record.port, option ? option : capa_pin_step_syscall(step), strerror(-rc));
    } else if (rc == 0 && (rc = configure(cfg, a)) < 0) {
      /* capa-run may have taken an idle aOG off the interface between the check and the bind
       * (IP_FREEBIND lets the bind succeed anyway): it goes back on before anything is sent. */
      capa_notice(cfg, "cannot put CAPA address %s back on interface %s (%s); not connecting", aog, cfg->interface,
                  strerror(-rc));
    }
  }
  if (rc < 0) {
    capa_release(cfg, a, rc == -EADDRINUSE ? "address in use" : "pin failed");
    return rc;
  }
  /* Under the supervisor, it must know this bind is the library's pin, not the program's own. */
  struct capa_supervisor_note note = {.fd = fd, .family = a->record.family, .port = a->record.port,
                                      .proto = a->record.proto, .dest_port = d->port};
  memcpy(note.addr, a->record.addr, sizeof note.addr);
  memcpy(note.dest_addr, d->ip.addr, sizeof note.dest_addr);
  if ((rc = capa_supervisor_tell(cfg, fd, &note)) < 0) {
    capa_notice(cfg, "cannot tell the CAPA supervisor about socket %d (%s); not connecting it", fd, strerror(-rc));
    capa_release(cfg, a, "supervisor unreachable");
    return -ENETUNREACH;
  }
  struct capa_pin entry = {.alloc = *a, .dest = d->ip, .dest_port = d->port};
  capa_pins_add(fd, &entry);
  log_pin(cfg, fd, a, d);
  return 0;
}

/* The allocation for this destination: an unclaimed one, or a fresh one asked by reverse name. */
static int allocation_for(const struct capa_config *cfg, int fd, int proto, const struct destination *d,
                          struct capa_allocation *a) {
  char text[CAPA_ADDRESS_TEXT_MAX];
  struct capa_lookup l;
  if (capa_unclaimed_take(&d->ip, d->port, proto, a)) return 1;
  capa_ip_format(&d->ip, text, sizeof text);
  capa_lookup(cfg, text, d->port, proto, &l);
  if (l.outcome == CAPA_PLAIN) {
    log_direct(cfg, "no CAPA needed", fd, proto, d);
    return 0;
  }
  if (l.outcome == CAPA_FAILED) {
    capa_notice(cfg, "not connecting %s %s:%u unpinned: %s", proto_name(proto), text, (unsigned)d->port, l.message);
    return -capa_failure_codes(l.failure)->errno_value;
  }
  *a = l.alloc;
  return 1;
}

/* The program bound the socket itself (nc -s/-p, curl --local-port, ssh -b) and now connects it
 * to a destination that needs CAPA: its source cannot be the allocation, so the connect fails. */
static int refuse_bound(const struct capa_config *cfg, int fd, int proto, const struct destination *d,
                        const struct capa_address *local, uint16_t local_port, const struct capa_allocation *a) {
  char from[CAPA_ADDRESS_TEXT_MAX], to[CAPA_ADDRESS_TEXT_MAX];
  capa_ip_format(local, from, sizeof from);
  capa_ip_format(&d->ip, to, sizeof to);
  capa_release(cfg, a, "bound by the program");
  capa_notice(cfg, "not connecting %s %s:%u from %s:%u, the source the program bound socket %d to: outside connections "
              "go from the (address, port) CAPA allocates; drop the program's own source option (nc -s/-p, curl "
              "--local-port, ssh -b), or connect without CAPA with capa-run --exempt %s",
              proto_name(proto), to, (unsigned)d->port, from, (unsigned)local_port, fd, to);
  return -EADDRNOTAVAIL;
}

static int same_destination(const struct capa_pin *p, const struct destination *d) {
  return p->dest.family == d->ip.family && memcmp(p->dest.addr, d->ip.addr, 16) == 0 && p->dest_port == d->port;
}

static int admits(const struct capa_config *cfg, int fd, const struct capa_pin *p, const struct destination *d) {
  if (same_destination(p, d)) return 0;
  capa_notice(cfg, "socket %d is pinned to its CAPA allocation for %s; it cannot reach another destination", fd,
              p->alloc.qname);
  return -EADDRNOTAVAIL;
}

static int prepare(int fd, const struct destination *d, int connecting) {
  const struct capa_config *cfg = capa_config();
  struct capa_pin pinned;
  struct capa_allocation a;
  int proto = socket_proto(fd);
  if (proto == 0 || link_only(&d->ip)) return 0;
  if (capa_config_exempts(cfg, &d->ip, d->port)) {
    /* The name lookup could not know the destination is exempt: hand its allocation back. */
    if (capa_unclaimed_take(&d->ip, d->port, proto, &a)) capa_release(cfg, &a, "exempt destination");
    return 0;
  }
  if (capa_pins_find(fd, &pinned)) {
    if (pin_is_live(fd, &pinned)) return admits(cfg, fd, &pinned, d);
    /* The pinned socket was closed behind the hooks (a system call not made through libc) and
     * its number reused: that flow is over, and this is a new socket. */
    if (capa_pins_remove(fd, &pinned)) capa_release(cfg, &pinned.alloc, "socket gone");
  }
  struct capa_address local;
  uint16_t local_port = 0;
  int bound = local_address(fd, &local, &local_port) && local_port != 0;
  /* A UDP socket the program bound to a port of its own answers its clients from it. */
  if (bound && !connecting) return 0;
  int rc = allocation_for(cfg, fd, proto, d, &a);
  if (rc <= 0) return rc;
  if (bound) return refuse_bound(cfg, fd, proto, d, &local, local_port, &a);
  /* A local listener may hold the allocated port (EADDRINUSE): hand it back, ask again. */
  for (int tries = 1;; tries++) {
    rc = pin(cfg, fd, d, &a, tries < MAX_PIN_TRIES);
    if (rc != -EADDRINUSE || tries == MAX_PIN_TRIES) return rc;
    if ((rc = allocation_for(cfg, fd, proto, d, &a)) <= 0) return rc == 0 ? -EADDRINUSE : rc;
  }
}

int capa_destination_needs_no_capa(const struct sockaddr *addr, socklen_t len) {
  struct destination d;
  return !read_destination(addr, len, &d) || link_only(&d.ip) || capa_config_exempts(capa_config(), &d.ip, d.port);
}

int capa_before_connect(int fd, const struct sockaddr *addr, socklen_t len) {
  struct destination d;
  return read_destination(addr, len, &d) ? prepare(fd, &d, 1) : 0;
}

int capa_pin_admits(int fd, const struct capa_pin *pin, const struct sockaddr *addr, socklen_t len) {
  struct destination d;
  if (!read_destination(addr, len, &d) || link_only(&d.ip) || capa_config_exempts(capa_config(), &d.ip, d.port)) return 0;
  return admits(capa_config(), fd, pin, &d);
}

int capa_before_send(int fd, const struct sockaddr *to, socklen_t len) {
  struct destination d;
  return read_destination(to, len, &d) ? prepare(fd, &d, 0) : 0;
}

int capa_bind_deferred(int fd, const struct sockaddr *addr, socklen_t len) {
  static const uint8_t any[16];
  struct capa_address ip;
  uint16_t port = 1;
  int mapped;
  return read_sockaddr(addr, len, &ip, &port, &mapped) && !mapped && port == 0 && memcmp(ip.addr, any, sizeof any) == 0 &&
         socket_proto(fd) != 0;
}

int capa_take_pin(int fd, struct capa_pin *pin) { return capa_pins_remove(fd, pin); }

void capa_release_pin(const struct capa_pin *pin, const char *why) {
  const struct capa_config *cfg = capa_config();
  char aog[CAPA_ADDRESS_TEXT_MAX];
  if (!pin->shared) {
    capa_release(cfg, &pin->alloc, why);
    return;
  }
  capa_address_format(pin->alloc.record.family, pin->alloc.record.addr, aog, sizeof aog);
  capa_log_event(cfg, "keep", "\"why\":\"%s, shared with a child\",\"qname\":\"%s\",\"aOG\":\"%s\",\"pA\":%u", why,
                 pin->alloc.qname, aog, (unsigned)pin->alloc.record.port);
}
