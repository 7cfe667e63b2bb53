/* Interface addresses through rtnetlink: see netlink.h. */
#define _GNU_SOURCE
#include "netlink.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A reader buffer of at least NLMSG_GOODSIZE (<= 8 KiB) is enough: the kernel
 * sizes dump chunks to what the reader asked for. */
#define NL_RECV_SIZE 8192
#define NL_MORE 1
/* The longest an IPv6 add waits for the address to become local. */
#define CAPA_NL_LOCAL_WAIT_MS 500

/* Room for the largest request we send: a header, a body, two 16-byte
 * address attributes and the one-octet IFA_PROTO. */
struct nl_request {
  struct nlmsghdr nh;
  union {
    struct ifaddrmsg ifa;
    struct rtmsg rt;
  } body;
  char attrs[2 * RTA_SPACE(16) + RTA_SPACE(1)];
};

typedef int (*nl_reply_fn)(struct nlmsghdr *nh, void *ctx);

struct nl_conn {
  int fd;
  uint32_t portid;
};

static int nl_open(struct nl_conn *conn) {
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  socklen_t len = sizeof local;
  conn->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (conn->fd < 0) return -errno;
  if (bind(conn->fd, (struct sockaddr *)&local, sizeof local) < 0 ||
      getsockname(conn->fd, (struct sockaddr *)&local, &len) < 0) {
    int err = errno;
    close(conn->fd);
    return -err;
  }
  conn->portid = local.nl_pid;
  return 0;
}

/* Appends an attribute; the request is the object written (its attrs hold the room). */
static void nl_put_attr(struct nl_request *req, unsigned short type, const void *data,
                        size_t len) {
  struct rtattr *rta = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->nh.nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(rta), data, len);
  req->nh.nlmsg_len = NLMSG_ALIGN(req->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static int nl_send(const struct nl_conn *conn, const struct nlmsghdr *nh) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n = sendto(conn->fd, nh, nh->nlmsg_len, 0, (struct sockaddr *)&kernel,
                     sizeof kernel);
  if (n < 0) return -errno;
  return (size_t)n == nh->nlmsg_len ? 0 : -EMSGSIZE;
}

/* NLMSG_ERROR carries 0 for an acknowledgement, else -errno. */
static int nl_error_code(const struct nlmsghdr *nh) {
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -EPROTO;
  return ((const struct nlmsgerr *)NLMSG_DATA(nh))->error;
}

/* NLMSG_DONE ends a dump; it may carry the dump's error. */
static int nl_done_code(const struct nlmsghdr *nh) {
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(int))) return 0;
  int err = *(const int *)NLMSG_DATA(nh);
  return err < 0 ? err : 0;
}

/* Hands our replies to fn; returns NL_MORE until an ack, error or end of dump. */
static int nl_dispatch(struct nlmsghdr *nh, size_t len, const struct nl_conn *conn,
                       uint32_t seq, nl_reply_fn fn, void *ctx) {
  for (; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
    if (nh->nlmsg_seq != seq || nh->nlmsg_pid != conn->portid) continue;
    if (nh->nlmsg_type == NLMSG_ERROR) return nl_error_code(nh);
    if (nh->nlmsg_type == NLMSG_DONE) return nl_done_code(nh);
    int rc = fn ? fn(nh, ctx) : 0;
    if (rc < 0) return rc;
  }
  return NL_MORE;
}

static int nl_receive(const struct nl_conn *conn, uint32_t seq, nl_reply_fn fn,
                      void *ctx) {
  union {
    struct nlmsghdr nh;
    char buf[NL_RECV_SIZE];
  } rx;
  for (;;) {
    struct sockaddr_nl from;
    struct iovec iov = {.iov_base = rx.buf, .iov_len = sizeof rx.buf};
    struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof from,
                         .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n = recvmsg(conn->fd, &msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (msg.msg_flags & MSG_TRUNC) return -EMSGSIZE;
    if (from.nl_pid != 0) continue; /* only the kernel answers requests */
    int rc = nl_dispatch(&rx.nh, (size_t)n, conn, seq, fn, ctx);
    if (rc != NL_MORE) return rc;
  }
}

/* One request/reply exchange on a socket of its own. Requests always ask
 * for an ack, so every exchange ends with an ack, an error or NLMSG_DONE. */
static int nl_transact(struct nl_request *req, nl_reply_fn fn, void *ctx) {
  struct nl_conn conn;
  int rc = nl_open(&conn);
  if (rc < 0) return rc;
  uint32_t seq = (uint32_t)time(NULL);
  req->nh.nlmsg_seq = seq;
  req->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  rc = nl_send(&conn, &req->nh);
  if (rc == 0) rc = nl_receive(&conn, seq, fn, ctx);
  close(conn.fd);
  return rc;
}

static int check_family(int family, unsigned prefix) {
  if (family == AF_INET) return prefix <= 32 ? 4 : -EINVAL;
  if (family == AF_INET6) return prefix <= 128 ? 16 : -EINVAL;
  return -EAFNOSUPPORT;
}

static int ifindex_of(const char *ifname, unsigned *index) {
  if (ifname == NULL || *ifname == '\0') return -ENODEV;
  *index = if_nametoindex(ifname);
  if (*index == 0) return errno ? -errno : -ENODEV;
  return 0;
}

/* RTM_NEWADDR / RTM_DELADDR for addr/prefix on an interface. */
static int addr_change(int type, int flags, const char *ifname, int family,
                       const uint8_t *addr, unsigned prefix) {
  struct nl_request req;
  unsigned index;
  int alen = check_family(family, prefix);
  if (alen < 0) return alen;
  int rc = ifindex_of(ifname, &index);
  if (rc < 0) return rc;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.body.ifa);
  req.nh.nlmsg_type = (unsigned short)type;
  req.nh.nlmsg_flags = (unsigned short)flags;
  req.body.ifa.ifa_family = (unsigned char)family;
  req.body.ifa.ifa_prefixlen = (unsigned char)prefix;
  req.body.ifa.ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0;
  req.body.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  req.body.ifa.ifa_index = index;
  nl_put_attr(&req, IFA_LOCAL, addr, (size_t)alen);
  nl_put_attr(&req, IFA_ADDRESS, addr, (size_t)alen);
  if (type == RTM_NEWADDR) {
    const uint8_t proto = CAPA_NL_ADDR_PROTO;
    nl_put_attr(&req, IFA_PROTO, &proto, 1);
  }
  return nl_transact(&req, NULL, NULL);
}

/* The kernel acks an IPv6 RTM_NEWADDR before its workqueue installs the
 * address's local route (IPv4 installs it before the ack): until then packets
 * to the address, a SYN-ACK say, are not delivered. Waits for the route, 1 ms
 * at a time (a failed lookup ends the wait). Best effort: where the lookup
 * cannot see the route (an address in a VRF's table) the add still succeeds,
 * after CAPA_NL_LOCAL_WAIT_MS. */
static void wait_until_local(const uint8_t *addr) {
  const struct timespec tick = {.tv_sec = 0, .tv_nsec = 1000000};
  for (int waited = 0; waited < CAPA_NL_LOCAL_WAIT_MS; waited++) {
    if (capa_nl_addr_is_local(AF_INET6, addr) != 0) return;
    nanosleep(&tick, NULL);
  }
}

int capa_nl_addr_add(const char *ifname, int family, const uint8_t *addr,
                     unsigned prefix) {
  /* REPLACE makes a second add of the same address succeed. */
  int rc = addr_change(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, ifname, family, addr,
                       prefix);
  if (rc == 0 && family == AF_INET6) wait_until_local(addr);
  return rc;
}

int capa_nl_addr_del(const char *ifname, int family, const uint8_t *addr,
                     unsigned prefix) {
  return addr_change(RTM_DELADDR, 0, ifname, family, addr, prefix);
}

struct addr_match {
  unsigned index;
  size_t alen;
  const uint8_t *addr;
  int found;
};

/* The interface's own address: IFA_LOCAL when present (IFA_ADDRESS is then
 * the peer of a point-to-point link), else IFA_ADDRESS. */
static const void *ifa_own_address(struct nlmsghdr *nh, size_t alen) {
  struct ifaddrmsg *ifa = NLMSG_DATA(nh);
  int len = (int)IFA_PAYLOAD(nh);
  const void *address = NULL;
  for (struct rtattr *rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    if (RTA_PAYLOAD(rta) != alen) continue;
    if (rta->rta_type == IFA_LOCAL) return RTA_DATA(rta);
    if (rta->rta_type == IFA_ADDRESS) address = RTA_DATA(rta);
  }
  return address;
}

static int match_address(struct nlmsghdr *nh, void *ctx) {
  struct addr_match *m = ctx;
  if (nh->nlmsg_type != RTM_NEWADDR || nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
    return 0;
  if (((struct ifaddrmsg *)NLMSG_DATA(nh))->ifa_index != m->index) return 0;
  const void *own = ifa_own_address(nh, m->alen);
  if (own && memcmp(own, m->addr, m->alen) == 0) m->found = 1;
  return 0;
}

int capa_nl_addr_check(const char *ifname, int family, const uint8_t *addr) {
  struct nl_request req;
  struct addr_match m = {.addr = addr};
  int alen = check_family(family, 0);
  if (alen < 0) return alen;
  int rc = ifindex_of(ifname, &m.index);
  if (rc < 0) return rc;
  m.alen = (size_t)alen;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.body.ifa);
  req.nh.nlmsg_type = RTM_GETADDR;
  req.nh.nlmsg_flags = NLM_F_DUMP;
  req.body.ifa.ifa_family = (unsigned char)family;
  rc = nl_transact(&req, match_address, &m);
  return rc < 0 ? rc : m.found;
}

static int route_is_local(struct nlmsghdr *nh, void *ctx) {
  if (nh->nlmsg_type != RTM_NEWROUTE || nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
    return 0;
  if (((struct rtmsg *)NLMSG_DATA(nh))->rtm_type == RTN_LOCAL) *(int *)ctx = 1;
  return 0;
}

int capa_nl_addr_is_local(int family, const uint8_t *addr) {
  struct nl_request req;
  int local = 0;
  int alen = check_family(family, 0);
  if (alen < 0) return alen;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.body.rt);
  req.nh.nlmsg_type = RTM_GETROUTE;
  req.body.rt.rtm_family = (unsigned char)family;
  req.body.rt.rtm_dst_len = (unsigned char)(alen * 8);
  nl_put_attr(&req, RTA_DST, addr, (size_t)alen);
  int rc = nl_transact(&req, route_is_local, &local);
  /* No route at all: certainly not local. */
  if (rc == -ENETUNREACH || rc == -EHOSTUNREACH) return 0;
  return rc < 0 ? rc : local;
}

struct capa_list {
  unsigned index;
  struct capa_nl_address *out;
  int max, count;
};

/* Collects the interface's addresses whose IFA_PROTO is CAPA's. */
static int collect_capa(struct nlmsghdr *nh, void *ctx) {
  struct capa_list *l = ctx;
  if (nh->nlmsg_type != RTM_NEWADDR || nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
    return 0;
  struct ifaddrmsg *ifa = NLMSG_DATA(nh);
  if (ifa->ifa_index != l->index || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)) return 0;
  int len = (int)IFA_PAYLOAD(nh), ours = 0;
  uint32_t created = 0;
  for (struct rtattr *rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    if (rta->rta_type == IFA_PROTO && RTA_PAYLOAD(rta) == 1) ours = *(uint8_t *)RTA_DATA(rta) == CAPA_NL_ADDR_PROTO;
    if (rta->rta_type == IFA_CACHEINFO && RTA_PAYLOAD(rta) >= sizeof(struct ifa_cacheinfo)) {
      created = ((struct ifa_cacheinfo *)RTA_DATA(rta))->cstamp;
    }
  }
  size_t alen = ifa->ifa_family == AF_INET ? 4 : 16;
  const void *own = ifa_own_address(nh, alen);
  if (!ours || own == NULL) return 0;
  if (l->count < l->max) {
    struct capa_nl_address *a = &l->out[l->count];
    memset(a, 0, sizeof *a);
    a->family = ifa->ifa_family;
    memcpy(a->addr, own, alen);
    a->prefix = ifa->ifa_prefixlen;
    a->created = created;
  }
  l->count++;
  return 0;
}

int capa_nl_addr_list_capa(const char *ifname, struct capa_nl_address *out, int max) {
  struct nl_request req;
  struct capa_list l = {.out = out, .max = max};
  int rc = ifindex_of(ifname, &l.index);
  if (rc < 0) return rc;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.body.ifa);
  req.nh.nlmsg_type = RTM_GETADDR;
  req.nh.nlmsg_flags = NLM_F_DUMP;
  req.body.ifa.ifa_family = AF_UNSPEC;
  rc = nl_transact(&req, collect_capa, &l);
  return rc < 0 ? rc : l.count;
}
