/*
 * The library's word to capa-run's seccomp supervisor, when both run (CAPA_SUPERVISOR names the
 * supervisor's abstract unix socket): each socket the library pins is handed to the supervisor
 * (SCM_RIGHTS) with its descriptor number, allocation and destination (which tell the
 * supervisor's sweeper when the socket is gone), before the connect or send that uses it. A unix
 * datagram is in the receiver's queue when sendmsg returns, so the supervisor, which reads its
 * queue before it judges a socket it does not know, knows that socket as pinned, not as a
 * program's own bind: there is no answer to wait for. Call only under the guard (real.h).
 * The calls the library has judged (its own, and the program's after the CAPA step) carry
 * CAPA_SUPERVISOR_TOKEN, two random 64-bit words, in args[4] and args[5] of the system call
 * (connect, bind and sendmsg leave them unused; a sendto with an address becomes a sendmsg): the
 * supervisor's filter lets them by without a notification.
 */
#ifndef CAPA_PRELOAD_SUPERVISOR_LINK_H
#define CAPA_PRELOAD_SUPERVISOR_LINK_H

#include <stdint.h>

#include "config.h"

/* What travels with the socket. */
struct capa_supervisor_note {
  int32_t fd;      /* the descriptor number in the program */
  int32_t family;  /* 4 or 6 */
  uint8_t addr[16];
  uint16_t port;   /* the allocation (aOG, pA) the socket is bound to */
  uint8_t proto;   /* 6 or 17 */
  uint8_t dest_addr[16];
  uint16_t dest_port; /* the destination it is pinned for (aOB, pB) */
};

/* 0 when the note is queued (or no supervisor runs), -errno when it could not be told. */
int capa_supervisor_tell(const struct capa_config *cfg, int fd, const struct capa_supervisor_note *note);

#endif
