/* The pending allocation table: see allocations.h. */
#include "allocations.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dns_client.h"

/* Beyond this many unclaimed allocations the oldest is dropped (the GRM reclaims it when its
 * lease ends): an app that resolves without connecting cannot grow the table without bound. */
#define MAX_PENDING 4096

struct pending {
  struct capa_allocation alloc;
  int64_t expires_ms;
};

static struct {
  pthread_mutex_t lock;
  struct pending *items;
  size_t count, capacity;
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void lock_for_fork(void) { pthread_mutex_lock(&table.lock); }
static void unlock_in_parent(void) { pthread_mutex_unlock(&table.lock); }

static void forget_in_child(void) {
  free(table.items);
  table.items = NULL;
  table.count = table.capacity = 0;
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

static void drop_expired(int64_t now) {
  for (size_t i = table.count; i-- > 0;) {
    if (table.items[i].expires_ms <= now) remove_at(i);
  }
}

static int has_room(void) {
  if (table.count == MAX_PENDING) remove_at(0); /* the oldest */
  if (table.count < table.capacity) return 1;
  size_t capacity = table.capacity ? table.capacity * 2 : 16;
  struct pending *items = realloc(table.items, capacity * sizeof *items);
  if (items == NULL) return 0;
  table.items = items;
  table.capacity = capacity;
  return 1;
}

void capa_pending_put(const struct capa_allocation *a) {
  int64_t now = capa_now_ms();
  lock_table();
  drop_expired(now);
  if (has_room()) {
    table.items[table.count].alloc = *a;
    table.items[table.count].expires_ms = now + (int64_t)a->ttl * 1000;
    table.count++;
  }
  pthread_mutex_unlock(&table.lock);
}

static int matches(const struct capa_allocation *a, const struct capa_ip *dest, uint16_t port, int proto) {
  return a->record.proto == proto && a->remote.family == dest->family &&
         memcmp(a->remote.addr, dest->addr, dest->family == 4 ? 4 : 16) == 0 &&
         (a->remote_port == port || a->remote_port == 0);
}

int capa_pending_take(const struct capa_ip *dest, uint16_t port, int proto, struct capa_allocation *out) {
  int64_t now = capa_now_ms();
  size_t best = 0;
  int found = 0;
  lock_table();
  drop_expired(now);
  for (size_t i = 0; i < table.count; i++) {
    if (!matches(&table.items[i].alloc, dest, port, proto)) continue;
    if (!found || table.items[i].expires_ms < table.items[best].expires_ms) best = i;
    found = 1;
  }
  if (found) {
    *out = table.items[best].alloc;
    remove_at(best);
  }
  pthread_mutex_unlock(&table.lock);
  return found;
}
