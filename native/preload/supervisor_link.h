/*
 * The library's word to capa-run's seccomp supervisor, when both run (CAPA_SUPERVISOR names the
 * supervisor's abstract unix socket): each socket the library pins is handed to the supervisor
 * (SCM_RIGHTS) with its descriptor number, allocation and destination (which tell the
 * supervisor's sweeper when the socket is gone), and the library waits for the ack, so
 * that the connect the supervisor then sees is known to be pinned, not a program's own bind.
 * Call only under the guard (real.h).
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

/* 0 when the supervisor acknowledged (or none runs), -errno when it could not be told. */
int capa_supervisor_tell(const struct capa_config *cfg, int fd, const struct capa_supervisor_note *note);

#endif
