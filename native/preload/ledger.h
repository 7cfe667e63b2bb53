/*
 * The ledger capa-run keeps for a process it cannot trust to clean up (killed, or ended by a
 * raw exit_group): with CAPA_LEDGER set to a folder, each allocation the process receives and
 * each it hands back is a line of <folder>/<pid>. When its program has ended, capa-run releases
 * what the lines of dead processes still hold. One open-append-close per line: no descriptor
 * of ours lives in the program.
 *   + <server> <zone> <qname> <flags> <proto> <port> <address>
 *   - <server> <zone> <qname> <flags> <proto> <port> <address>
 */
#ifndef CAPA_PRELOAD_LEDGER_H
#define CAPA_PRELOAD_LEDGER_H

#include "config.h"
#include "lookup.h"

/* sign: '+' received, '-' handed back. Does nothing without CAPA_LEDGER. */
void capa_ledger_note(const struct capa_config *cfg, char sign, const struct capa_allocation *a);

#endif
