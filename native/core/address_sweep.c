/* Taking idle CAPA addresses off an interface: see address_sweep.h. */
#define _GNU_SOURCE
#include "address_sweep.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capa_codec.h"
#include "socket_table.h"

static int same_address(int family, const uint8_t *a, const uint8_t *b) {
  return memcmp(a, b, family == AF_INET ? 4 : 16) == 0;
}

size_t capa_sweep_decide(const struct capa_nl_address *marked, const int *in_use, size_t n,
                         const struct capa_idle_record *earlier, size_t n_earlier, int64_t now_ms, int64_t idle_ms,
                         int *remove, struct capa_idle_record *next) {
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    const struct capa_nl_address *a = &marked[i];
    const struct capa_idle_record *seen = NULL;
    remove[i] = 0;
    if (in_use[i]) continue;
    for (size_t j = 0; j < n_earlier && seen == NULL; j++) {
      const struct capa_idle_record *r = &earlier[j];
      if (r->family == a->family && r->created == a->created && same_address(a->family, r->addr, a->addr)) seen = r;
    }
    if (seen != NULL && now_ms - seen->since_ms >= idle_ms) {
      remove[i] = 1;
      continue;
    }
    next[kept] = (struct capa_idle_record){.family = a->family, .created = a->created, .since_ms = seen ? seen->since_ms : now_ms};
    memcpy(next[kept].addr, a->addr, 16);
    kept++;
  }
  return kept;
}

/* ---- the shell ---------------------------------------------------------------------------- */

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* <tmp>/capa-idle-addresses-<netns inode>-<ifname>: one file per namespace and interface. */
static void state_path(const char *ifname, char *out, size_t len) {
  char ns[64] = "";
  const char *tmp = getenv("TMPDIR");
  ssize_t n = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
  ns[n > 0 ? n : 0] = '\0';
  const char *digits = ns + strcspn(ns, "0123456789");
  snprintf(out, len, "%s/capa-idle-addresses-%.*s-%s", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp",
           (int)strspn(digits, "0123456789"), digits[0] != '\0' ? digits : "host", ifname);
}

/* Lines "<address> <created> <since_ms>"; a missing or torn file starts the count again. */
static size_t read_records(const char *path, struct capa_idle_record *out, size_t max) {
  char text[CAPA_ADDRESS_TEXT_MAX + 1];
  unsigned long created;
  long long since;
  size_t n = 0;
  FILE *f = fopen(path, "re");
  if (f == NULL) return 0;
  while (n < max && fscanf(f, "%46s %lu %lld", text, &created, &since) == 3) {
    int family;
    if (capa_address_parse(text, &family, out[n].addr) != CAPA_OK) break;
    out[n].family = family == 4 ? AF_INET : AF_INET6;
    out[n].created = (uint32_t)created;
    out[n].since_ms = since;
    n++;
  }
  fclose(f);
  return n;
}

static void write_records(const char *path, const struct capa_idle_record *r, size_t n) {
  char temporary[4200], text[CAPA_ADDRESS_TEXT_MAX];
  snprintf(temporary, sizeof temporary, "%s.%ld", path, (long)getpid());
  FILE *f = fopen(temporary, "we");
  if (f == NULL) return;
  for (size_t i = 0; i < n; i++) {
    capa_address_format(r[i].family == AF_INET ? 4 : 6, r[i].addr, text, sizeof text);
    fprintf(f, "%s %lu %lld\n", text, (unsigned long)r[i].created, (long long)r[i].since_ms);
  }
  if (fclose(f) == 0) rename(temporary, path);
  else unlink(temporary);
}

static int in_use(const struct capa_nl_address *a) {
  return capa_local_socket_holds(0, a->family == AF_INET ? 4 : 6, a->addr, 0);
}

/* One look's tables, on the heap (a few tens of KiB). */
struct look {
  struct capa_nl_address marked[CAPA_SWEEP_MAX];
  struct capa_idle_record earlier[CAPA_SWEEP_MAX], next[CAPA_SWEEP_MAX];
  int used[CAPA_SWEEP_MAX], remove[CAPA_SWEEP_MAX];
};

int capa_sweep_addresses(const char *ifname, int64_t idle_ms) {
  char path[4096];
  struct look *l = malloc(sizeof *l);
  if (l == NULL) return -ENOMEM;
  int total = capa_nl_addr_list_capa(ifname, l->marked, CAPA_SWEEP_MAX), removed = 0;
  if (total < 0) {
    free(l);
    return total;
  }
  size_t n = (size_t)total < CAPA_SWEEP_MAX ? (size_t)total : CAPA_SWEEP_MAX;
  for (size_t i = 0; i < n; i++) l->used[i] = in_use(&l->marked[i]);
  state_path(ifname, path, sizeof path);
  size_t n_earlier = read_records(path, l->earlier, CAPA_SWEEP_MAX);
  size_t n_next = capa_sweep_decide(l->marked, l->used, n, l->earlier, n_earlier, now_ms(), idle_ms, l->remove, l->next);
  for (size_t i = 0; i < n; i++) {
    const struct capa_nl_address *a = &l->marked[i];
    if (!l->remove[i] || capa_nl_addr_del(ifname, a->family, a->addr, a->prefix) < 0) continue;
    /* A process that found the address local a moment ago may have bound to it since: give it back. */
    if (in_use(a)) capa_nl_addr_add(ifname, a->family, a->addr, a->prefix);
    else removed++;
  }
  write_records(path, l->next, n_next);
  free(l);
  return removed;
}
