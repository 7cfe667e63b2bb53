/*
 * struct capa_address (family 4 or 6) and a port as a socket address: the one filler every
 * part (pinning, the DNS client, getaddrinfo results) uses. Pure.
 */
#ifndef CAPA_CORE_SOCKADDR_H
#define CAPA_CORE_SOCKADDR_H

#include <stdint.h>
#include <sys/socket.h>

#include "capa_codec.h"

/* Fills *ss for (a, port); returns its length. */
socklen_t capa_sockaddr(const struct capa_address *a, uint16_t port, struct sockaddr_storage *ss);

#endif
