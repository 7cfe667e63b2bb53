/*
 * Allocations the process will not use go back to the GRM instead of waiting out their lease:
 * a looked-up one that no connect took within CAPA_UNUSED_MS (a sweeper thread, started by the
 * first unclaimed allocation and ending when none is left), and every one the process still holds,
 * pinned or unclaimed, when it ends (exit, return from main, _exit). What a kill leaves behind,
 * capa-run hands back from the ledger (ledger.h). Call under the guard (real.h).
 */
#ifndef CAPA_PRELOAD_HANDBACK_H
#define CAPA_PRELOAD_HANDBACK_H

#include "lookup.h"

/* Keeps the allocation for the connect to come (allocations.h), under the sweeper's watch. */
void capa_unclaimed_keep(const struct capa_allocation *a);

/* Releases every pinned and unclaimed allocation of this process, each with `why`. */
void capa_handback_all(const char *why);

#endif
