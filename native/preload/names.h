/*
 * The resolver side of capa-run: getaddrinfo / gethostbyname* answered by a CAPA round trip.
 * The query is `_<port>._<proto>.<host>` when the caller names a port (number or service), else
 * the bare host (a partial allocation, completed by the connect's port). The result is aOB, and
 * the allocation waits in the unclaimed table for the connect that uses it.
 * NODATA / NOTIMP / FORMERR (a server that does not know CAPA) and inside destinations get the
 * server's addresses or, when it sent none, the real resolver's answer. Failures map as
 * lookup.h says. IP literals, "localhost" names and numeric-only requests go to the real
 * resolver: the connect of a literal asks CAPA by reverse name.
 * Call only under the guard (real.h); CAPA_NAMES_REAL means "let the real function answer".
 */
#ifndef CAPA_PRELOAD_NAMES_H
#define CAPA_PRELOAD_NAMES_H

#include <netdb.h>
#include <stddef.h>

#define CAPA_NAMES_REAL (-1000)

int capa_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res);

/* gethostbyname2_r semantics (return 0 or an errno value, *result NULL on failure). */
int capa_gethostbyname(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                       struct hostent **result, int *h_errnop);

#endif
