/* Handing back unused allocations and those of a process that ends: see handback.h. */
#define _GNU_SOURCE
#include "handback.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "allocations.h"
#include "config.h"
#include "pins.h"
#include "real.h"
#include "release.h"
#include "terminal.h"

#define SWEEP_EVERY_MS 250
#define SWEEP_BATCH 64

static void *sweep(void *unused) {
  struct capa_allocation due[SWEEP_BATCH];
  const struct timespec pause = {.tv_sec = 0, .tv_nsec = SWEEP_EVERY_MS * 1000000L};
  int more = 1;
  (void)unused;
  capa_guard_enter(); /* this thread's DNS goes straight to libc */
  while (more) {
    size_t n = capa_unclaimed_take_due(due, SWEEP_BATCH, &more);
    for (size_t i = 0; i < n; i++) capa_release(capa_config(), &due[i], "unused");
    if (n == 0 && more) nanosleep(&pause, NULL);
    more |= n > 0;
  }
  capa_guard_leave();
  return NULL;
}

/* A detached thread with every signal blocked: signals stay the program's. Without one the
 * leases still end at the GRM; only the early hand-back is lost. */
static void start_sweeper(void) {
  pthread_attr_t attr;
  pthread_t thread;
  sigset_t all, old;
  if (pthread_attr_init(&attr) != 0) return;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_create(&thread, &attr, sweep, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
}

void capa_unclaimed_keep(const struct capa_allocation *a) {
  if (capa_unclaimed_put(a)) start_sweeper();
}

/* The process whose tables these are: a vfork child shares the parent's memory, and must never
 * hand the parent's allocations back (no fork handler runs for it, so getpid() tells). */
static pid_t owner;

static void own_tables(void) { owner = getpid(); }

__attribute__((constructor)) static void at_load(void) {
  own_tables();
  pthread_atfork(NULL, NULL, own_tables);
}

void capa_handback_all(const char *why) {
  const struct capa_config *cfg = capa_config();
  if (getpid() != owner) return;
  size_t n_pins = 0, n_unclaimed = 0;
  struct capa_pinned_fd *pins = capa_pins_remove_range(0, UINT_MAX, &n_pins);
  struct capa_allocation *unclaimed = capa_unclaimed_take_all(&n_unclaimed);
  for (size_t i = 0; i < n_pins; i++) capa_release_pin(&pins[i].pin, why);
  for (size_t i = 0; i < n_unclaimed; i++) capa_release(cfg, &unclaimed[i], why);
  free(pins);
  free(unclaimed);
}

/* exit() and a return from main run this; _exit and _Exit are hooked (hooks.c). */
__attribute__((destructor)) static void at_process_end(void) {
  if (capa_guarded()) return;
  capa_guard_enter();
  capa_handback_all("exit");
  capa_guard_leave();
}
