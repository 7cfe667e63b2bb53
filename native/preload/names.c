/* getaddrinfo / gethostbyname by CAPA: see names.h. */
#define _GNU_SOURCE
#include "names.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "allocations.h"
#include "handback.h"
#include "config.h"
#include "local_names.h"
#include "log.h"
#include "lookup.h"
#include "release.h"

#define SERVICE_BUF 1024

/* Names CAPA answers for: not NULL, no IP literal (inet_aton forms and IPv6 included), none the
 * system resolves without DNS. */
static int is_capa_name(const char *name) {
  struct in_addr ignored;
  return name != NULL && name[0] != '\0' && strchr(name, ':') == NULL && inet_aton(name, &ignored) == 0 &&
         !capa_is_local_name(name);
}

static int is_capa_request(const char *node, const struct addrinfo *h) {
  return is_capa_name(node) && !(h->ai_flags & AI_NUMERICHOST) &&
         (h->ai_family == AF_UNSPEC || h->ai_family == AF_INET || h->ai_family == AF_INET6) &&
         (h->ai_socktype == 0 || h->ai_socktype == SOCK_STREAM || h->ai_socktype == SOCK_DGRAM) &&
         (h->ai_protocol == 0 || h->ai_protocol == IPPROTO_TCP || h->ai_protocol == IPPROTO_UDP);
}

/* The destination port of the service (0 when none): 0 or an EAI_* code. */
static int service_port(const char *service, int proto, int flags, uint16_t *port) {
  char buf[SERVICE_BUF];
  struct servent entry, *found = NULL;
  *port = 0;
  if (service == NULL) return 0;
  size_t digits = strspn(service, "0123456789");
  if (digits > 0 && service[digits] == '\0') {
    long v = digits <= 5 ? strtol(service, NULL, 10) : 65536;
    if (v > 65535) return EAI_SERVICE;
    *port = (uint16_t)v;
    return 0;
  }
  if (flags & AI_NUMERICSERV) return EAI_NONAME;
  if (getservbyname_r(service, proto == IPPROTO_UDP ? "udp" : "tcp", &entry, buf, sizeof buf, &found) != 0 || found == NULL) {
    return EAI_SERVICE;
  }
  *port = ntohs((uint16_t)found->s_port);
  return 0;
}

static void log_allocation(const struct capa_config *cfg, const char *via, const struct capa_allocation *a) {
  char aog[CAPA_ADDRESS_TEXT_MAX], aob[CAPA_ADDRESS_TEXT_MAX];
  capa_address_format(a->record.family, a->record.addr, aog, sizeof aog);
  capa_ip_format(&a->remote, aob, sizeof aob);
  capa_log_event(cfg, "allocate", "\"via\":\"%s\",\"proto\":%d,\"qname\":\"%s\",\"aOG\":\"%s\",\"pA\":%u,\"aOB\":\"%s\",\"pB\":%u,\"ttl\":%u",
                 via, a->record.proto, a->qname, aog, (unsigned)a->record.port, aob, (unsigned)a->remote_port,
                 (unsigned)a->ttl);
}

/* Keeps the allocation for the connect to come, or hands it back when the caller got no result
 * or cannot use it (a family it did not ask for; for a bare host, a protocol the server chose). */
static void settle(const struct capa_config *cfg, const struct capa_allocation *a, const char *unusable) {
  if (unusable == NULL) capa_unclaimed_keep(a);
  else capa_release(cfg, a, unusable);
}

/* A repeated lookup of (host, port, proto) with no connect in between: the allocation it already
 * holds (still unclaimed, its wait restarted) instead of a new one. */
static int reused(const char *host, uint16_t port, int proto, struct capa_allocation *a) {
  char qname[CAPA_NAME_TEXT_MAX];
  return capa_qname_build(host, port, proto, qname, sizeof qname) == CAPA_OK && capa_unclaimed_reuse(qname, proto, a);
}

/* CAPA does not know the name, and the system would go on to its hosts file after DNS. */
static int is_hosts_fallback(const char *name, const struct capa_lookup *l) {
  return l->outcome == CAPA_FAILED && l->failure == CAPA_FAIL_NOT_FOUND && capa_is_hosts_name_after_dns(name);
}

static void fail_notice(const struct capa_config *cfg, const char *name, const struct capa_lookup *l) {
  capa_notice(cfg, "cannot resolve %s: %s", name, l->message);
}

/* ---- getaddrinfo ---------------------------------------------------------------------------- */

/* One node holding its own address, as glibc's freeaddrinfo expects (it frees the node and its
 * canonical name only). */
static struct addrinfo *new_node(const struct capa_address *ip, uint16_t port, int mapped, int socktype, int proto) {
  struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_in6));
  if (ai == NULL) return NULL;
  struct capa_address wire = *ip;
  if (mapped) {
    wire.family = 6;
    memcpy(wire.addr, CAPA_V4_MAPPED, sizeof CAPA_V4_MAPPED);
    memcpy(wire.addr + 12, ip->addr, 4);
  }
  struct sockaddr_storage ss;
  ai->ai_addrlen = capa_sockaddr(&wire, port, &ss);
  ai->ai_addr = (struct sockaddr *)(ai + 1);
  memcpy(ai->ai_addr, &ss, ai->ai_addrlen);
  ai->ai_family = wire.family == 4 ? AF_INET : AF_INET6;
  ai->ai_socktype = socktype;
  ai->ai_protocol = proto;
  return ai;
}

struct request {
  const char *node;
  const struct addrinfo *hints;
  uint16_t port;
  int proto;
  int socktype;
};

/* Addresses of the families the request allows (v4-mapped where asked), in order. */
static int address_list(const struct request *r, const struct capa_address *ips, int n, struct addrinfo **res) {
  struct addrinfo *head = NULL, **tail = &head;
  int family = r->hints->ai_family;
  for (int i = 0; i < n; i++) {
    int v4 = ips[i].family == 4;
    int mapped = v4 && family == AF_INET6 && (r->hints->ai_flags & AI_V4MAPPED);
    if ((family == AF_INET && !v4) || (family == AF_INET6 && v4 && !mapped)) continue;
    *tail = new_node(&ips[i], r->port, mapped, r->socktype, r->proto);
    if (*tail == NULL) {
      freeaddrinfo(head);
      return EAI_MEMORY;
    }
    tail = &(*tail)->ai_next;
  }
  if (head == NULL) return EAI_ADDRFAMILY;
  if ((r->hints->ai_flags & AI_CANONNAME) && (head->ai_canonname = strdup(r->node)) == NULL) {
    freeaddrinfo(head);
    return EAI_MEMORY;
  }
  *res = head;
  return 0;
}

int capa_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  static const struct addrinfo defaults = {.ai_family = AF_UNSPEC, .ai_flags = AI_V4MAPPED | AI_ADDRCONFIG};
  const struct capa_config *cfg = capa_config();
  const struct addrinfo *h = hints ? hints : &defaults;
  struct capa_lookup l;
  if (!is_capa_request(node, h)) return CAPA_NAMES_REAL;
  struct request r = {.node = node, .hints = h};
  r.proto = h->ai_socktype == SOCK_DGRAM || h->ai_protocol == IPPROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
  r.socktype = h->ai_socktype ? h->ai_socktype : r.proto == IPPROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
  int rc = service_port(service, r.proto, h->ai_flags, &r.port);
  if (rc != 0) return rc;
  if (reused(node, r.port, r.proto, &l.alloc)) return address_list(&r, &l.alloc.remote, 1, res);
  capa_lookup(cfg, node, r.port, r.proto, &l);
  if (is_hosts_fallback(node, &l)) return CAPA_NAMES_REAL;
  if (l.outcome == CAPA_FAILED) {
    fail_notice(cfg, node, &l);
    return capa_failure_codes(l.failure)->eai;
  }
  if (l.outcome == CAPA_PLAIN) {
    rc = address_list(&r, l.addrs, l.n_addrs, res);
    return rc == EAI_ADDRFAMILY ? EAI_NODATA : rc; /* the name has no address of the asked family */
  }
  const struct capa_allocation *a = &l.alloc;
  log_allocation(cfg, "getaddrinfo", a);
  rc = address_list(&r, &a->remote, 1, res);
  settle(cfg, a, rc == EAI_ADDRFAMILY ? "unusable family" : rc != 0 ? "no result" : a->record.proto != r.proto ? "unusable protocol" : NULL);
  return rc;
}

/* ---- gethostbyname -------------------------------------------------------------------------- */

/* Lays the hostent out in the caller's buffer: alias list, address list, addresses, name. */
static int fill_hostent(const char *name, int af, const struct capa_address *ips, int n, struct hostent *ret, char *buf,
                        size_t buflen) {
  size_t addr_len = af == AF_INET ? 4 : 16, name_len = strlen(name) + 1;
  size_t pad = (sizeof(char *) - (uintptr_t)buf % sizeof(char *)) % sizeof(char *);
  size_t need = pad + (size_t)(n + 2) * sizeof(char *) + (size_t)n * addr_len + name_len;
  if (buflen < need) return ERANGE;
  char **aliases = (char **)(void *)(buf + pad), **list = aliases + 1;
  char *addrs = (char *)(list + n + 1), *h_name = addrs + (size_t)n * addr_len;
  aliases[0] = NULL;
  for (int i = 0; i < n; i++) {
    list[i] = addrs + (size_t)i * addr_len;
    memcpy(list[i], ips[i].addr, addr_len);
  }
  list[n] = NULL;
  memcpy(h_name, name, name_len);
  ret->h_name = h_name;
  ret->h_aliases = aliases;
  ret->h_addrtype = af;
  ret->h_length = (int)addr_len;
  ret->h_addr_list = list;
  return 0;
}

static int host_result(const char *name, int af, const struct capa_address *ips, int n, struct hostent *ret, char *buf,
                       size_t buflen, struct hostent **result, int *h_errnop) {
  int rc = fill_hostent(name, af, ips, n, ret, buf, buflen);
  *result = rc == 0 ? ret : NULL;
  *h_errnop = rc == 0 ? NETDB_SUCCESS : NETDB_INTERNAL;
  return rc;
}

int capa_gethostbyname(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                       struct hostent **result, int *h_errnop) {
  const struct capa_config *cfg = capa_config();
  struct capa_lookup l;
  struct capa_address same_family[CAPA_MAX_ADDRS];
  int n = 0, family = af == AF_INET ? 4 : 6;
  if (!is_capa_name(name) || (af != AF_INET && af != AF_INET6)) return CAPA_NAMES_REAL;
  if (reused(name, 0, IPPROTO_TCP, &l.alloc)) {
    if (l.alloc.remote.family == family) return host_result(name, af, &l.alloc.remote, 1, ret, buf, buflen, result, h_errnop);
    *result = NULL;
    *h_errnop = NO_DATA;
    return 0;
  }
  capa_lookup(cfg, name, 0, IPPROTO_TCP, &l);
  if (is_hosts_fallback(name, &l)) return CAPA_NAMES_REAL;
  if (l.outcome == CAPA_FAILED) {
    fail_notice(cfg, name, &l);
    *result = NULL;
    *h_errnop = capa_failure_codes(l.failure)->h_errno_value;
    return *h_errnop == TRY_AGAIN ? EAGAIN : 0;
  }
  if (l.outcome == CAPA_ALLOCATED) {
    log_allocation(cfg, "gethostbyname", &l.alloc);
    int rc = 0;
    if (l.alloc.remote.family != family) {
      *result = NULL;
      *h_errnop = NO_DATA;
    } else {
      rc = host_result(name, af, &l.alloc.remote, 1, ret, buf, buflen, result, h_errnop);
    }
    settle(cfg, &l.alloc, *result == NULL ? (rc ? "no result" : "unusable family") : NULL);
    return rc;
  }
  for (int i = 0; i < l.n_addrs; i++) {
    if (l.addrs[i].family == family) same_family[n++] = l.addrs[i];
  }
  if (n == 0) {
    *result = NULL;
    *h_errnop = NO_DATA;
    return 0;
  }
  return host_result(name, af, same_family, n, ret, buf, buflen, result, h_errnop);
}
