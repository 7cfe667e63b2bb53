/*
 * The sockets of this host's network namespace that a live process holds, from the kernel's
 * tables /proc/net/{tcp,tcp6,udp,udp6} (readable without privileges). TIME_WAIT and orphaned
 * sockets (inode 0) are left out: no process uses them. A v4-mapped IPv6 address is reported
 * as the IPv4 address it maps. And one socket looked up by its addresses through sock_diag
 * (NETLINK_SOCK_DIAG, no privileges needed).
 */
#ifndef CAPA_SOCKET_TABLE_H
#define CAPA_SOCKET_TABLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct capa_local_socket {
  int proto;  /* 6 or 17 */
  int family; /* 4 or 6 */
  uint8_t addr[16];
  uint16_t port;
};

/* Calls fn for every such socket until it returns non-zero (which is returned); 0 when all
 * were seen. A table that cannot be read (IPv6 off) is skipped. */
int capa_local_sockets(int (*fn)(const struct capa_local_socket *s, void *ctx), void *ctx);

/* 1 when a live socket of proto (0: either) is bound to addr (and port, unless 0), else 0. */
int capa_local_socket_holds(int proto, int family, const uint8_t *addr, uint16_t port);

/* The inode of the socket of proto (6, 17) bound to local and, for TCP, connected to remote
 * (a UDP socket that is not connected matches any remote): > 0; 0 when there is none, or only
 * one that no process holds any more (closed, in TIME_WAIT); -errno when the kernel could not
 * be asked. */
long capa_socket_inode(int proto, const struct capa_local_socket *local, const uint8_t *remote_addr, uint16_t remote_port);

#ifdef __cplusplus
}
#endif

#endif
