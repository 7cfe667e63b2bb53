/*
 * Handing an allocation back when its socket closes: the UPDATE goes out at once over UDP; its
 * reply is awaited (at most RELEASE_WAIT_MS) only when CAPA_LOG wants the outcome, so a close
 * never waits on the network otherwise. A lost release costs nothing lasting: the data plane
 * also ends the state when the flow disappears.
 * Call only under the guard (real.h).
 */
#ifndef CAPA_PRELOAD_RELEASE_H
#define CAPA_PRELOAD_RELEASE_H

#include "config.h"
#include "lookup.h"

#define RELEASE_WAIT_MS 100

/* why: a short reason for the log ("close", "unused", ...). */
void capa_release(const struct capa_config *cfg, const struct capa_allocation *a, const char *why);

#endif
