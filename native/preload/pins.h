/*
 * Sockets this library pinned, by descriptor: what to release when one closes, and the
 * destination a later connect or send on it must keep to. A forked child starts with none: its
 * copies of the parent's descriptors are not its flows, so closing them releases nothing. And
 * in the parent every pin becomes shared at a fork: the child may go on with the flow (ssh -f,
 * a daemon), so the parent's close or exit leaves the allocation to the data plane, which ends
 * it when the flow ends.
 */
#ifndef CAPA_PRELOAD_PINS_H
#define CAPA_PRELOAD_PINS_H

#include <stdint.h>

#include "lookup.h"

struct capa_pin {
  struct capa_allocation alloc;
  struct capa_address dest; /* the destination it was pinned for (aOB) */
  uint16_t dest_port;  /* pB as connected (fills in a partial allocation) */
  int shared;          /* a forked child holds the socket too */
};

/* Records fd as pinned; a stale entry for a reused descriptor number is replaced. */
void capa_pins_add(int fd, const struct capa_pin *pin);

/* 1 and a copy in *out when fd is pinned. */
int capa_pins_find(int fd, struct capa_pin *out);

/* Like find, and forgets fd. */
int capa_pins_remove(int fd, struct capa_pin *out);

/* A pinned descriptor taken out of the table. */
struct capa_pinned_fd {
  int fd;
  struct capa_pin pin;
};

/* Forgets every pinned descriptor from first to last (inclusive); returns them in an array the
 * caller frees, with their number in *n; NULL when there are none (or no memory for the array,
 * in which case they stay, to be found stale when their number is reused). */
struct capa_pinned_fd *capa_pins_remove_range(unsigned first, unsigned last, size_t *n);

#endif
