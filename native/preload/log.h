/*
 * What capa-run tells people: CAPA_LOG gets one JSON line per event (allocations, pins,
 * releases, failures) for tests and abuse tracing; stderr gets a one-line explanation of each
 * CAPA failure, unless CAPA_QUIET.
 */
#ifndef CAPA_PRELOAD_LOG_H
#define CAPA_PRELOAD_LOG_H

#include <stddef.h>

#include "config.h"

/* Appends {"time":..,"pid":..,"event":"<event>",<fields>} to CAPA_LOG (if set). `fields` is a
 * printf format producing JSON members (or "" for none); strings in it must be JSON-safe
 * (names and addresses are; other text goes through capa_json_text). */
void capa_log_event(const struct capa_config *cfg, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* "capa-run: <program>: <message>" on stderr unless quiet, and an "error" event in the log. */
void capa_notice(const struct capa_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* text with JSON string escapes (without the quotes), truncated to fit out. */
void capa_json_text(const char *text, char *out, size_t len);

#endif
