/*
 * Pending allocations: answers a resolver hook received, kept until the connect (or first send
 * of an unbound UDP socket) that uses them. Keyed by destination (family, aOB, pB) and protocol;
 * a partial allocation (pB 0, from a lookup without a port) matches any port of aOB. Each one is
 * handed out once, never after its lease (TTL) has passed. A forked child starts with none:
 * they belong to the parent, and one allocation must never serve two sockets.
 */
#ifndef CAPA_PRELOAD_ALLOCATIONS_H
#define CAPA_PRELOAD_ALLOCATIONS_H

#include <stdint.h>

#include "lookup.h"

/* Keeps the allocation (a copy) until taken or expired. */
void capa_pending_put(const struct capa_allocation *a);

/* Removes and returns the matching allocation with the earliest expiry: 1 found, 0 none. */
int capa_pending_take(const struct capa_ip *dest, uint16_t port, int proto, struct capa_allocation *out);

#endif
