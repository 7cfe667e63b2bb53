/*
 * capa-run's side of the allocation ledger (native/preload/ledger.h): the library writes a line
 * per allocation received (+) and handed back (-) into <folder>/<pid>; when the program has
 * ended, capa-run releases what the ledgers of processes that are gone still hold (killed by a
 * signal, or ended by a raw exit_group, they could not do it themselves), unless a live process
 * on this host still holds a socket bound to the allocation (a forked child carries the flow on).
 */
#ifndef CAPA_LAUNCHER_SETTLE_H
#define CAPA_LAUNCHER_SETTLE_H

#include "../preload/config.h"

/* Releases what the ledgers in dir of processes that are gone still hold, logging each to
 * CAPA_LOG as the library would (the settings are the environment's, config.h); the ledgers of live processes (a daemon the program left
 * behind) stay with them; the folder goes when none is left. */
void capa_ledger_settle(const char *dir);

#endif
