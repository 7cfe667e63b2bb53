/*
 * capa-run's configuration, from the environment (capa-run sets it from its flags):
 *   CAPA_SERVER      CAPA servers, comma-separated ip, ip:port, [v6]:port (default port 53);
 *                    default: the nameservers of /etc/resolv.conf
 *   CAPA_LOG         append one JSON line per CAPA event to this file
 *   CAPA_QUIET       set (and not "0") to keep CAPA errors off stderr
 *   CAPA_EXEMPT      comma-separated prefixes (CIDR, or one address) connected without CAPA
 *   CAPA_INTERFACE   interface to configure allocated addresses on when they are not local
 *   CAPA_RRTYPE      RR type number of CAPA (default 65280)
 *   CAPA_TIMEOUT_MS  overall deadline of one CAPA lookup (default 2000)
 *   CAPA_SUPERVISOR  abstract unix socket name of capa-run's seccomp supervisor (supervisor_link.h)
 *   CAPA_SUPERVISOR_TOKEN  32 hex digits the supervisor's filter lets by (supervisor_link.h)
 *   CAPA_STRICT      set (and not "0") to refuse execs that would escape the library (exec_check.h)
 *   CAPA_LEDGER      folder of the per-process allocation ledger capa-run reads (ledger.h)
 * A bad value does not fall back to defaults: it is kept in `error` and every CAPA lookup fails
 * with it (fail closed).
 */
#ifndef CAPA_PRELOAD_CONFIG_H
#define CAPA_PRELOAD_CONFIG_H

#include <net/if.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../core/capa_codec.h"
#include "../core/sockaddr.h"

#define CAPA_MAX_SERVERS 8
#define CAPA_MAX_EXEMPT 32
#define CAPA_DEFAULT_TIMEOUT_MS 2000
#define CAPA_SERVER_TEXT_MAX 56 /* "[v6]:port" and the NUL */

struct capa_server {
  struct capa_address ip;
  uint16_t port;
  char text[CAPA_SERVER_TEXT_MAX];
};

struct capa_prefix {
  struct capa_address ip;
  unsigned bits;
};

struct capa_config {
  struct capa_server servers[CAPA_MAX_SERVERS];
  int n_servers;
  /* The nameservers of resolv.conf: the program's own DNS traffic to them is never pinned. */
  struct capa_server nameservers[CAPA_MAX_SERVERS];
  int n_nameservers;
  struct capa_prefix exempt[CAPA_MAX_EXEMPT];
  int n_exempt;
  char log_path[4096];
  char ledger_dir[4096];
  char supervisor[100]; /* empty: no supervisor runs */
  int has_token;
  uint64_t supervisor_token[2];
  int quiet;
  int strict;
  char interface[IF_NAMESIZE];
  uint16_t rrtype;
  int timeout_ms;
  char error[256]; /* empty when the configuration is usable */
};

/* The process's configuration, read once from the environment on first use. */
const struct capa_config *capa_config(void);

/* One server of text[0..n): ip, ip:port, [v6], [v6]:port or a bare v6 (port 53 when none is
 * given). 0, or -1 with what is wrong, for a person, in why. */
int capa_server_parse(const char *text, size_t n, struct capa_server *s, char *why, size_t why_len);

/* One prefix of text[0..n): a.b.c.d/len, v6/len or one address (a host prefix). 0, or -1 with
 * what is wrong in why. */
int capa_prefix_parse(const char *text, size_t n, struct capa_prefix *pfx, char *why, size_t why_len);

/* Fills cfg from an environment lookup function and a resolv.conf path. */
void capa_config_load(struct capa_config *cfg, const char *(*env)(const char *name),
                      const char *resolv_conf);

/* 1 when a flow to (ip, port) goes without CAPA: a CAPA server, a resolv.conf nameserver on
 * port 53, or an exempt prefix. */
int capa_config_exempts(const struct capa_config *cfg, const struct capa_address *ip, uint16_t port);

/* "a.b.c.d" or RFC 5952 IPv6 text. */
void capa_ip_format(const struct capa_address *ip, char *out, size_t len);

/* The first 12 octets of a v4-mapped IPv6 address (::ffff:a.b.c.d). */
extern const uint8_t CAPA_V4_MAPPED[12];

#endif
