/* The host's live sockets from /proc/net: see socket_table.h. */
#define _GNU_SOURCE
#include "socket_table.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* "0100007F:1F90": the address as the kernel prints its 32-bit words (host order), the port. */
static int parse_endpoint(const char *text, int words, struct capa_local_socket *s) {
  char word[9];
  for (int i = 0; i < words; i++) {
    memcpy(word, text + 8 * i, 8);
    word[8] = '\0';
    uint32_t v = (uint32_t)strtoul(word, NULL, 16);
    memcpy(s->addr + 4 * i, &v, 4);
  }
  if (text[8 * words] != ':') return -1;
  s->port = (uint16_t)strtoul(text + 8 * words + 1, NULL, 16);
  s->family = words == 1 ? 4 : 6;
  if (s->family == 6 && memcmp(s->addr, V4_MAPPED, 12) == 0) {
    memmove(s->addr, s->addr + 12, 4);
    s->family = 4;
  }
  return 0;
}

/* One table: fn's first non-zero result, else 0. */
static int read_table(const char *path, int proto, int words, int (*fn)(const struct capa_local_socket *, void *), void *ctx) {
  char line[512], local[64];
  unsigned long inode;
  FILE *f = fopen(path, "re");
  int rc = 0;
  if (f == NULL) return 0;
  if (fgets(line, sizeof line, f) == NULL) line[0] = '\0'; /* the heading */
  while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
    struct capa_local_socket s = {.proto = proto};
    /* sl local rem st tx:rx tr:tm retrnsmt uid timeout inode */
    if (sscanf(line, " %*s %63s %*s %*s %*s %*s %*s %*s %*s %lu", local, &inode) != 2 || inode == 0) continue;
    if (strlen(local) != (size_t)(8 * words + 5) || parse_endpoint(local, words, &s) < 0) continue;
    rc = fn(&s, ctx);
  }
  fclose(f);
  return rc;
}

int capa_local_sockets(int (*fn)(const struct capa_local_socket *s, void *ctx), void *ctx) {
  static const struct {
    const char *path;
    int proto, words;
  } tables[] = {{"/proc/net/tcp", 6, 1}, {"/proc/net/tcp6", 6, 4}, {"/proc/net/udp", 17, 1}, {"/proc/net/udp6", 17, 4}};
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    int rc = read_table(tables[i].path, tables[i].proto, tables[i].words, fn, ctx);
    if (rc != 0) return rc;
  }
  return 0;
}

struct holds_query {
  int proto, family;
  const uint8_t *addr;
  uint16_t port;
};

static int matches(const struct capa_local_socket *s, void *ctx) {
  const struct holds_query *q = ctx;
  return (q->proto == 0 || s->proto == q->proto) && s->family == q->family && (q->port == 0 || s->port == q->port) &&
         memcmp(s->addr, q->addr, q->family == 4 ? 4 : 16) == 0;
}

int capa_local_socket_holds(int proto, int family, const uint8_t *addr, uint16_t port) {
  struct holds_query q = {proto, family, addr, port};
  return capa_local_sockets(matches, &q);
}

long capa_socket_inode(int proto, const struct capa_local_socket *local, const uint8_t *remote_addr, uint16_t remote_port) {
  struct {
    struct nlmsghdr nh;
    struct inet_diag_req_v2 r;
  } req;
  union {
    struct nlmsghdr nh;
    char bytes[1024];
  } reply;
  size_t len = local->family == 4 ? 4 : 16;
  memset(&req, 0, sizeof req);
  req.nh = (struct nlmsghdr){.nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST};
  req.r.sdiag_family = local->family == 4 ? AF_INET : AF_INET6;
  req.r.sdiag_protocol = (uint8_t)proto;
  req.r.idiag_states = ~0u;
  req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  /* TCP is looked up as (local, remote); UDP as the datagram it would receive: (remote, local). */
  int udp = proto == 17;
  memcpy(udp ? req.r.id.idiag_dst : req.r.id.idiag_src, local->addr, len);
  memcpy(udp ? req.r.id.idiag_src : req.r.id.idiag_dst, remote_addr, len);
  *(udp ? &req.r.id.idiag_dport : &req.r.id.idiag_sport) = htons(local->port);
  *(udp ? &req.r.id.idiag_sport : &req.r.id.idiag_dport) = htons(remote_port);
  int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (s < 0) return -errno;
  ssize_t n = send(s, &req, sizeof req, 0) < 0 ? -1 : recv(s, &reply, sizeof reply, 0);
  int err = errno;
  close(s);
  if (n < 0) return -err;
  if ((size_t)n < sizeof reply.nh || !NLMSG_OK(&reply.nh, (size_t)n)) return -EBADMSG;
  if (reply.nh.nlmsg_type == NLMSG_ERROR) {
    int rc = ((const struct nlmsgerr *)NLMSG_DATA(&reply.nh))->error;
    return rc == -ENOENT ? 0 : rc;
  }
  if (reply.nh.nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return -EBADMSG;
  return (long)((const struct inet_diag_msg *)NLMSG_DATA(&reply.nh))->idiag_inode;
}
