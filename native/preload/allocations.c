/* The unclaimed allocation table: see allocations.h. */
#include "allocations.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns_client.h"

/* Beyond this many unclaimed allocations the oldest is dropped (the sweeper or the GRM's lease
 * reclaims it): an app that resolves without connecting cannot grow the table without bound. */
#define MAX_PENDING 4096

struct unclaimed {
  struct capa_allocation alloc;
  int64_t due_ms; /* handed back when no connect has taken it by then */
};

static struct {
  pthread_mutex_t lock;
  struct unclaimed *items;
  size_t count, capacity;
  int sweeping; /* a sweeper thread serves this table */
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void lock_for_fork(void) { pthread_mutex_lock(&table.lock); }
static void unlock_in_parent(void) { pthread_mutex_unlock(&table.lock); }

static void forget_in_child(void) {
  free(table.items);
  table.items = NULL;
  table.count = table.capacity = 0;
  table.sweeping = 0; /* threads do not survive fork */
  pthread_mutex_unlock(&table.lock);
}

static void register_fork_handlers(void) { pthread_atfork(lock_for_fork, unlock_in_parent, forget_in_child); }

static void lock_table(void) {
  pthread_once(&fork_once, register_fork_handlers);
  pthread_mutex_lock(&table.lock);
}

static void remove_at(size_t i) {
  memmove(&table.items[i], &table.items[i + 1], (table.count - i - 1) * sizeof table.items[0]);
  table.count--;
}

static int has_room(void) {
  if (table.count == MAX_PENDING) remove_at(0); /* the oldest */
  if (table.count < table.capacity) return 1;
  size_t capacity = table.capacity ? table.capacity * 2 : 16;
  struct unclaimed *items = realloc(table.items, capacity * sizeof *items);
  if (items == NULL) return 0;
  table.items = items;
  table.capacity = capacity;
  return 1;
}

/* CAPA_UNUSED_MS from now, or the end of the lease if that comes first. */
static int64_t due(const struct capa_allocation *a, int64_t now) {
  int64_t lease = now + (int64_t)a->ttl * 1000;
  return now + CAPA_UNUSED_MS < lease ? now + CAPA_UNUSED_MS : lease;
}

int capa_unclaimed_put(const struct capa_allocation *a) {
  int64_t now = capa_now_ms();
  int start = 0;
  lock_table();
  if (has_room()) {
    table.items[table.count].alloc = *a;
    table.items[table.count].due_ms = due(a, now);
    table.count++;
    start = !table.sweeping;
    table.sweeping = 1;
  }
  pthread_mutex_unlock(&table.lock);
  return start;
}

static int matches(const struct capa_allocation *a, const struct capa_address *dest, uint16_t port, int proto) {
  return a->record.proto == proto && a->remote.family == dest->family &&
         memcmp(a->remote.addr, dest->addr, dest->family == 4 ? 4 : 16) == 0 &&
         (a->remote_port == port || a->remote_port == 0);
}

int capa_unclaimed_take(const struct capa_address *dest, uint16_t port, int proto, struct capa_allocation *out) {
  size_t best = 0;
  int found = 0;
  lock_table();
  for (size_t i = 0; i < table.count; i++) {
    if (!matches(&table.items[i].alloc, dest, port, proto)) continue;
    if (!found || table.items[i].due_ms < table.items[best].due_ms) best = i;
    found = 1;
  }
  if (found) {
    *out = table.items[best].alloc;
    remove_at(best);
  }
  pthread_mutex_unlock(&table.lock);
  return found;
}

int capa_unclaimed_reuse(const char *qname, int proto, struct capa_allocation *out) {
  int64_t now = capa_now_ms();
  int found = 0;
  lock_table();
  for (size_t i = 0; i < table.count && !found; i++) {
    struct unclaimed *p = &table.items[i];
    if (p->alloc.record.proto != proto || strcasecmp(p->alloc.qname, qname) != 0) continue;
    p->due_ms = due(&p->alloc, now);
    *out = p->alloc;
    found = 1;
  }
  pthread_mutex_unlock(&table.lock);
  return found;
}

size_t capa_unclaimed_take_due(struct capa_allocation *out, size_t max, int *more) {
  int64_t now = capa_now_ms();
  size_t n = 0;
  lock_table();
  for (size_t i = table.count; i-- > 0 && n < max;) {
    if (table.items[i].due_ms > now) continue;
    out[n++] = table.items[i].alloc;
    remove_at(i);
  }
  *more = table.count > 0;
  if (!*more && n == 0) table.sweeping = 0;
  pthread_mutex_unlock(&table.lock);
  return n;
}

struct capa_allocation *capa_unclaimed_take_all(size_t *n) {
  struct capa_allocation *all = NULL;
  lock_table();
  *n = 0;
  if (table.count > 0 && (all = malloc(table.count * sizeof *all)) != NULL) {
    for (size_t i = 0; i < table.count; i++) all[i] = table.items[i].alloc;
    *n = table.count;
    table.count = 0;
  }
  pthread_mutex_unlock(&table.lock);
  return all;
}
