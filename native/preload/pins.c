/* The pinned socket table: see pins.h. */
#include "pins.h"

#include <pthread.h>
#include <stdlib.h>

/* Indexed by descriptor. `count` lets close() of an unpinned descriptor (the common case: files,
 * pipes) skip the lock entirely. */
static struct {
  pthread_mutex_t lock;
  struct capa_pin **by_fd;
  size_t size;
  int count;
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void lock_for_fork(void) { pthread_mutex_lock(&table.lock); }

static void share_in_parent(void) {
  for (size_t i = 0; i < table.size; i++) {
    if (table.by_fd[i] != NULL) table.by_fd[i]->shared = 1;
  }
  pthread_mutex_unlock(&table.lock);
}

static void forget_in_child(void) {
  for (size_t i = 0; i < table.size; i++) free(table.by_fd[i]);
  free(table.by_fd);
  table.by_fd = NULL;
  table.size = 0;
  __atomic_store_n(&table.count, 0, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&table.lock);
}

static void register_fork_handlers(void) { pthread_atfork(lock_for_fork, share_in_parent, forget_in_child); }

static void lock_table(void) {
  pthread_once(&fork_once, register_fork_handlers);
  pthread_mutex_lock(&table.lock);
}

static int grow_to(size_t fd) {
  if (fd < table.size) return 1;
  size_t size = table.size ? table.size : 64;
  while (size <= fd) size *= 2;
  struct capa_pin **by_fd = realloc(table.by_fd, size * sizeof *by_fd);
  if (by_fd == NULL) return 0;
  for (size_t i = table.size; i < size; i++) by_fd[i] = NULL;
  table.by_fd = by_fd;
  table.size = size;
  return 1;
}

void capa_pins_add(int fd, const struct capa_pin *pin) {
  struct capa_pin *copy = malloc(sizeof *copy);
  if (copy == NULL || fd < 0) {
    free(copy);
    return;
  }
  *copy = *pin;
  lock_table();
  if (grow_to((size_t)fd)) {
    if (table.by_fd[fd] == NULL) __atomic_add_fetch(&table.count, 1, __ATOMIC_RELEASE);
    free(table.by_fd[fd]);
    table.by_fd[fd] = copy;
    copy = NULL;
  }
  pthread_mutex_unlock(&table.lock);
  free(copy);
}

/* Under the lock: drops the (present) entry of fd. */
static void forget_locked(size_t fd) {
  free(table.by_fd[fd]);
  table.by_fd[fd] = NULL;
  __atomic_sub_fetch(&table.count, 1, __ATOMIC_RELEASE);
}

static int lookup(int fd, struct capa_pin *out, int forget) {
  int found = 0;
  if (fd < 0 || __atomic_load_n(&table.count, __ATOMIC_ACQUIRE) == 0) return 0;
  lock_table();
  if ((size_t)fd < table.size && table.by_fd[fd] != NULL) {
    found = 1;
    *out = *table.by_fd[fd];
    if (forget) forget_locked((size_t)fd);
  }
  pthread_mutex_unlock(&table.lock);
  return found;
}

int capa_pins_find(int fd, struct capa_pin *out) { return lookup(fd, out, 0); }

int capa_pins_remove(int fd, struct capa_pin *out) { return lookup(fd, out, 1); }

struct capa_pinned_fd *capa_pins_remove_range(unsigned first, unsigned last, size_t *n) {
  struct capa_pinned_fd *taken = NULL;
  *n = 0;
  if (first > last || __atomic_load_n(&table.count, __ATOMIC_ACQUIRE) == 0) return NULL;
  lock_table();
  size_t end = (size_t)last < table.size ? (size_t)last + 1 : table.size;
  if (first < end) taken = malloc((size_t)table.count * sizeof *taken);
  for (size_t fd = first; taken != NULL && fd < end; fd++) {
    if (table.by_fd[fd] == NULL) continue;
    taken[*n].fd = (int)fd;
    taken[*n].pin = *table.by_fd[fd];
    (*n)++;
    forget_locked(fd);
  }
  pthread_mutex_unlock(&table.lock);
  if (*n == 0) {
    free(taken);
    return NULL;
  }
  return taken;
}
