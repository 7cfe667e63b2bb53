/*
 * Pending allocations: answers a resolver hook received, kept until the connect (or first send
 * of an unbound UDP socket) that uses them. Keyed by destination (family, aOB, pB) and protocol;
 * a partial allocation (pB 0, from a lookup without a port) matches any port of aOB. Each one is
 * handed out once. One that no connect takes within CAPA_UNUSED_MS (or its lease, if shorter)
 * is due to be handed back (sweeper.h). A forked child starts with none: they belong to the
 * parent, and one allocation must never serve two sockets.
 */
#ifndef CAPA_PRELOAD_ALLOCATIONS_H
#define CAPA_PRELOAD_ALLOCATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "lookup.h"

/* How long a looked-up allocation waits for its connect before it is handed back. */
#define CAPA_UNUSED_MS 1000

/* Keeps the allocation (a copy) until taken or due. Returns 1 when the caller must start a
 * sweeper (none runs for this table), else 0. */
int capa_unclaimed_put(const struct capa_allocation *a);

/* Removes and returns the matching allocation with the earliest deadline: 1 found, 0 none. */
int capa_unclaimed_take(const struct capa_address *dest, uint16_t port, int proto, struct capa_allocation *out);

/* A copy of the unclaimed allocation asked under the same qname for proto, its wait restarted: a
 * repeated lookup with no connect in between reuses it. 1 found, 0 none. */
int capa_unclaimed_reuse(const char *qname, int proto, struct capa_allocation *out);

/* Removes up to max allocations whose wait is over into out; returns how many. When the table
 * is empty it returns 0 with *more = 0, and the sweeper is no longer counted as running. */
size_t capa_unclaimed_take_due(struct capa_allocation *out, size_t max, int *more);

/* Removes every allocation; the caller frees the array. */
struct capa_allocation *capa_unclaimed_take_all(size_t *n);

#endif
