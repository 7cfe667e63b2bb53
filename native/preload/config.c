/* Environment configuration: see config.h. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/capa_codec.h"

#define RESOLV_CONF "/etc/resolv.conf"
#define DNS_PORT 53
#define MAX_TIMEOUT_MS 600000
#define ITEM_MAX 128

const uint8_t CAPA_V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static struct capa_config process_config;
static pthread_once_t config_once = PTHREAD_ONCE_INIT;

static void set_error(struct capa_config *cfg, const char *fmt, ...) {
  va_list ap;
  if (cfg->error[0] != '\0') return; /* the first problem is the one to fix first */
  va_start(ap, fmt);
  vsnprintf(cfg->error, sizeof cfg->error, fmt, ap);
  va_end(ap);
}

void capa_ip_format(const struct capa_address *ip, char *out, size_t len) {
  if (capa_address_format(ip->family, ip->addr, out, len) != CAPA_OK && len > 0) out[0] = '\0';
}

static int parse_ip(const char *text, size_t n, struct capa_address *ip) {
  char buf[CAPA_ADDRESS_TEXT_MAX];
  if (n >= sizeof buf) return -1;
  memcpy(buf, text, n);
  buf[n] = '\0';
  return capa_address_parse(buf, &ip->family, ip->addr) == CAPA_OK ? 0 : -1;
}

/* Whole decimal number in [min, max] spelling all of text[0..n). */
static int parse_number(const char *text, size_t n, long min, long max, long *out) {
  long v = 0;
  if (n == 0 || n > 9) return -1;
  for (size_t i = 0; i < n; i++) {
    if (text[i] < '0' || text[i] > '9') return -1;
    v = v * 10 + (text[i] - '0');
  }
  if (v < min || v > max) return -1;
  *out = v;
  return 0;
}

static void format_server(struct capa_server *s) {
  char ip[CAPA_ADDRESS_TEXT_MAX];
  capa_ip_format(&s->ip, ip, sizeof ip);
  snprintf(s->text, sizeof s->text, s->ip.family == 6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)s->port);
}

/* ip, ip:port, [v6], [v6]:port or a bare v6 (which has more than one colon). */
int capa_server_parse(const char *text, size_t n, struct capa_server *s, char *why, size_t why_len) {
  const char *addr = text, *port = NULL;
  size_t addr_n = n, port_n = 0;
  const char *bracket = memchr(text, ']', n);
  const char *colon = memchr(text, ':', n);
  long p = DNS_PORT;
  int shown = n < ITEM_MAX ? (int)n : ITEM_MAX;
  if (n > 0 && text[0] == '[') {
    addr = text + 1;
    addr_n = bracket != NULL ? (size_t)(bracket - addr) : 0;
    if (bracket != NULL && bracket + 1 < text + n) {
      port = bracket[1] == ':' ? bracket + 2 : bracket + 1;
      port_n = (size_t)(text + n - port);
    }
  } else if (colon != NULL && memchr(colon + 1, ':', (size_t)(text + n - colon - 1)) == NULL) {
    addr_n = (size_t)(colon - text);
    port = colon + 1;
    port_n = (size_t)(text + n - port);
  }
  if ((n > 0 && text[0] == '[' && bracket == NULL) || (port != NULL && port[-1] != ':') || parse_ip(addr, addr_n, &s->ip) < 0) {
    snprintf(why, why_len, "server \"%.*s\" is not an IP address (write 192.0.2.1, 192.0.2.1:5300, 2001:db8::1 or "
             "[2001:db8::1]:5300)", shown, text);
    return -1;
  }
  if (port != NULL && parse_number(port, port_n, 1, 65535, &p) < 0) {
    snprintf(why, why_len, "server \"%.*s\": port must be 1-65535, got \"%.*s\"", shown, text, (int)port_n, port);
    return -1;
  }
  s->port = (uint16_t)p;
  format_server(s);
  return 0;
}

int capa_prefix_parse(const char *text, size_t n, struct capa_prefix *pfx, char *why, size_t why_len) {
  const char *slash = memchr(text, '/', n);
  size_t addr_n = slash ? (size_t)(slash - text) : n;
  int ok = parse_ip(text, addr_n, &pfx->ip) == 0;
  long bits = ok && pfx->ip.family == 4 ? 32 : 128;
  if (!ok || (slash && parse_number(slash + 1, (size_t)(text + n - slash - 1), 0, bits, &bits) < 0)) {
    snprintf(why, why_len, "\"%.*s\" is not a prefix like 192.0.2.0/24, 2001:db8::/32 or one address",
             n < ITEM_MAX ? (int)n : ITEM_MAX, text);
    return -1;
  }
  pfx->bits = (unsigned)bits;
  return 0;
}

typedef int (*item_fn)(struct capa_config *cfg, const char *item, size_t n);

/* Calls fn on every item of a comma- or space-separated list; stops at the first failure. */
static void for_each_item(struct capa_config *cfg, const char *list, item_fn fn) {
  const char *p = list;
  while (*p != '\0') {
    size_t skip = strspn(p, ", \t");
    size_t n = strcspn(p + skip, ", \t");
    if (n > 0 && fn(cfg, p + skip, n) < 0) return;
    p += skip + n;
  }
}

static int add_server(struct capa_config *cfg, const char *item, size_t n) {
  char why[sizeof cfg->error];
  if (cfg->n_servers == CAPA_MAX_SERVERS) {
    set_error(cfg, "CAPA_SERVER: at most %d servers", CAPA_MAX_SERVERS);
    return -1;
  }
  if (capa_server_parse(item, n, &cfg->servers[cfg->n_servers], why, sizeof why) < 0) {
    set_error(cfg, "CAPA_SERVER: %s", why);
    return -1;
  }
  cfg->n_servers++;
  return 0;
}

static int add_exempt(struct capa_config *cfg, const char *item, size_t n) {
  char why[sizeof cfg->error];
  if (cfg->n_exempt == CAPA_MAX_EXEMPT) {
    set_error(cfg, "CAPA_EXEMPT: at most %d prefixes", CAPA_MAX_EXEMPT);
    return -1;
  }
  if (capa_prefix_parse(item, n, &cfg->exempt[cfg->n_exempt], why, sizeof why) < 0) {
    set_error(cfg, "CAPA_EXEMPT: %s", why);
    return -1;
  }
  cfg->n_exempt++;
  return 0;
}

/* The `nameserver` lines of resolv.conf, port 53, into list; other lines are not ours to judge.
 * -1 (errno set) when the file cannot be read. */
static int read_resolv_conf(const char *path, struct capa_server *list, int *n) {
  char line[512];
  FILE *f = fopen(path, "re");
  *n = 0;
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f) != NULL && *n < CAPA_MAX_SERVERS) {
    char *p = line + strspn(line, " \t");
    if (strncmp(p, "nameserver", 10) != 0 || strchr(" \t", p[10]) == NULL) continue;
    p += 10 + strspn(p + 10, " \t");
    struct capa_server *s = &list[*n];
    if (parse_ip(p, strcspn(p, " \t\r\n"), &s->ip) < 0) continue;
    s->port = DNS_PORT;
    format_server(s);
    (*n)++;
  }
  fclose(f);
  return 0;
}

/* The nameservers of resolv.conf as the CAPA servers, when CAPA_SERVER does not name any. */
static void servers_from_resolv_conf(struct capa_config *cfg, const char *path) {
  if (read_resolv_conf(path, cfg->servers, &cfg->n_servers) < 0) {
    set_error(cfg, "no CAPA server: set CAPA_SERVER (capa-run --server) or fix %s (%s)", path, strerror(errno));
  } else if (cfg->n_servers == 0) {
    set_error(cfg, "no CAPA server: set CAPA_SERVER (capa-run --server) or add a nameserver to %s", path);
  }
}

static void copy_setting(struct capa_config *cfg, const char *name, const char *value, char *out, size_t len) {
  if (strlen(value) >= len) {
    set_error(cfg, "%s is too long (at most %zu characters)", name, len - 1);
    return;
  }
  strcpy(out, value);
}

static long number_setting(struct capa_config *cfg, const char *name, const char *value, long min,
                           long max, long fallback) {
  long v = fallback;
  if (value != NULL && value[0] != '\0' && parse_number(value, strlen(value), min, max, &v) < 0) {
    set_error(cfg, "%s must be a whole number %ld-%ld, got \"%s\"", name, min, max, value);
  }
  return v;
}

/* CAPA_SUPERVISOR_TOKEN: two 64-bit words, 16 hex digits each. */
static void token_setting(struct capa_config *cfg, const char *value) {
  char word[17] = {0};
  size_t len = strlen(value);
  if (len != 32 || strspn(value, "0123456789abcdefABCDEF") != 32) {
    set_error(cfg, "CAPA_SUPERVISOR_TOKEN must be 32 hex digits, got \"%s\"", value);
    return;
  }
  for (int i = 0; i < 2; i++) {
    memcpy(word, value + 16 * i, 16);
    cfg->supervisor_token[i] = strtoull(word, NULL, 16);
  }
  cfg->has_token = 1;
}

/* A flag variable: set, and neither empty nor "0". */
static int is_set(const char *value) { return value != NULL && value[0] != '\0' && strcmp(value, "0") != 0; }

void capa_config_load(struct capa_config *cfg, const char *(*env)(const char *name),
                      const char *resolv_conf) {
  const char *servers = env("CAPA_SERVER"), *exempt = env("CAPA_EXEMPT"), *quiet = env("CAPA_QUIET");
  const char *log_path = env("CAPA_LOG"), *interface = env("CAPA_INTERFACE"), *ledger = env("CAPA_LEDGER");
  const char *supervisor = env("CAPA_SUPERVISOR"), *token = env("CAPA_SUPERVISOR_TOKEN");
  memset(cfg, 0, sizeof *cfg);
  if (servers != NULL && strspn(servers, ", \t") != strlen(servers)) for_each_item(cfg, servers, add_server);
  else servers_from_resolv_conf(cfg, resolv_conf);
  read_resolv_conf(resolv_conf, cfg->nameservers, &cfg->n_nameservers); /* none when unreadable */
  if (exempt != NULL) for_each_item(cfg, exempt, add_exempt);
  if (log_path != NULL) copy_setting(cfg, "CAPA_LOG", log_path, cfg->log_path, sizeof cfg->log_path);
  if (ledger != NULL) copy_setting(cfg, "CAPA_LEDGER", ledger, cfg->ledger_dir, sizeof cfg->ledger_dir);
  if (supervisor != NULL) copy_setting(cfg, "CAPA_SUPERVISOR", supervisor, cfg->supervisor, sizeof cfg->supervisor);
  if (token != NULL) token_setting(cfg, token);
  if (interface != NULL) copy_setting(cfg, "CAPA_INTERFACE", interface, cfg->interface, sizeof cfg->interface);
  cfg->quiet = is_set(quiet);
  cfg->strict = is_set(env("CAPA_STRICT"));
  cfg->rrtype = (uint16_t)number_setting(cfg, "CAPA_RRTYPE", env("CAPA_RRTYPE"), 1, 65535, CAPA_DEFAULT_RRTYPE);
  cfg->timeout_ms = (int)number_setting(cfg, "CAPA_TIMEOUT_MS", env("CAPA_TIMEOUT_MS"), 1, MAX_TIMEOUT_MS, CAPA_DEFAULT_TIMEOUT_MS);
}

static const char *process_env(const char *name) { return getenv(name); }

static void load_process_config(void) { capa_config_load(&process_config, process_env, RESOLV_CONF); }

const struct capa_config *capa_config(void) {
  pthread_once(&config_once, load_process_config);
  return &process_config;
}


static int same_ip(const struct capa_address *a, const struct capa_address *b) {
  return a->family == b->family && memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16) == 0;
}

static int in_prefix(const struct capa_prefix *pfx, const struct capa_address *ip) {
  unsigned full = pfx->bits / 8, rest = pfx->bits % 8;
  if (pfx->ip.family != ip->family || memcmp(pfx->ip.addr, ip->addr, full) != 0) return 0;
  if (rest == 0) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (pfx->ip.addr[full] & mask) == (ip->addr[full] & mask);
}

static int is_server(const struct capa_server *list, int n, const struct capa_address *ip, uint16_t port) {
  for (int i = 0; i < n; i++) {
    if (list[i].port == port && same_ip(&list[i].ip, ip)) return 1;
  }
  return 0;
}

int capa_config_exempts(const struct capa_config *cfg, const struct capa_address *ip, uint16_t port) {
  if (is_server(cfg->servers, cfg->n_servers, ip, port) || is_server(cfg->nameservers, cfg->n_nameservers, ip, port)) {
    return 1;
  }
  for (int i = 0; i < cfg->n_exempt; i++) {
    if (in_prefix(&cfg->exempt[i], ip)) return 1;
  }
  return 0;
}

