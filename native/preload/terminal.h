/*
 * The socket side of capa-run: what happens before the app's connect, send or bind reaches the
 * kernel, and after its close. Each returns 0 to let the real call go ahead, or -errno to fail
 * it (the socket is then never used unpinned). Call only under the guard (real.h).
 *
 * - connect / first send of an unconnected socket to an AF_INET/AF_INET6 TCP or UDP
 *   destination: take the unclaimed allocation for (aOB, pB, proto) or ask by reverse name, put
 *   aOG on CAPA_INTERFACE when it is not local, pin the socket to (aOG, pA), then let the real
 *   call run (a non-blocking connect stays non-blocking).
 * - Exempt, connected as they are: other families, other protocols, multicast, broadcast and
 *   link-local destinations, the CAPA servers' own address and port, CAPA_EXEMPT prefixes, and
 *   destinations the server answers without CAPA (inside-to-inside, or a server that does not
 *   know CAPA).
 * - A TCP or UDP bind to the wildcard address and port 0 (node's dgram does that before its first
 *   send) is deferred: the socket stays unbound and is pinned at its connect or first send like
 *   any unbound socket.
 * - A socket the program bound to an address or port of its own (nc -s/-p, curl --local-port,
 *   ssh -b) cannot carry an allocation: its connect to a destination that needs CAPA fails with
 *   EADDRNOTAVAIL and one line that says why (the allocation is handed back); one the server
 *   answers without CAPA connects as bound. Its sends without a connect (a UDP server answering
 *   its clients) go as bound.
 * - A bind of the allocated port that fails with EADDRINUSE (a local listener holds it) hands the
 *   allocation back and asks again, up to 3 allocations; it never falls back unpinned.
 * - A pinned socket keeps to its destination: sending or connecting it elsewhere fails with
 *   EADDRNOTAVAIL.
 */
#ifndef CAPA_PRELOAD_TERMINAL_H
#define CAPA_PRELOAD_TERMINAL_H

#include <sys/socket.h>

int capa_before_connect(int fd, const struct sockaddr *addr, socklen_t len);

/* 1 when a flow to this address never needs CAPA, whatever the socket: not AF_INET/AF_INET6
 * with an address and a port, link-only, a CAPA server or resolv.conf nameserver, exempt. (An
 * exempt destination's unclaimed allocation is still handed back by capa_before_connect.) */
int capa_destination_needs_no_capa(const struct sockaddr *addr, socklen_t len);

/* For sendto/sendmsg with a destination address (to may be NULL: nothing to do). */
int capa_before_send(int fd, const struct sockaddr *to, socklen_t len);

/* 1 when the app's bind is to be deferred (not passed to the kernel, reported as done). */
int capa_bind_deferred(int fd, const struct sockaddr *addr, socklen_t len);

/* Call with the descriptor before the real close: returns 1 and fills *pin when the socket was
 * pinned, so the caller can release it after the close. */
struct capa_pin;
int capa_take_pin(int fd, struct capa_pin *pin);

/* 0 when a connect or send to addr may use the pinned socket (its own destination, or one that
 * needs no CAPA), else -EADDRNOTAVAIL with one line on stderr: another destination would go out
 * from an allocation made for the first. */
int capa_pin_admits(int fd, const struct capa_pin *pin, const struct sockaddr *addr, socklen_t len);

/* Releases the allocation of a closed pinned socket; why: the call that closed it, for the log.
 * A pin shared with a forked child is left to the data plane (pins.h). */
void capa_release_pin(const struct capa_pin *pin, const char *why);

#endif
