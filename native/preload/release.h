/*
 * Handing an allocation back when its socket closes: the UPDATE goes out at once over UDP and
 * the reply is awaited only briefly (RELEASE_WAIT_MS), for the log. A lost release costs
 * nothing lasting: the data plane also ends the state when the flow disappears.
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
