/*
 * capa-run's seccomp supervisor (supervise.c): runs a program so that every connect, bind and
 * addressed send of its whole process tree is pinned, whether or not the LD_PRELOAD library
 * reaches it. Configured by the CAPA_* environment (config.h) and CAPA_PRELOAD, the LD_PRELOAD
 * to give the program.
 */
#ifndef CAPA_SUPERVISE_H
#define CAPA_SUPERVISE_H

#include <signal.h>

/* capa-run's exit codes, as env(1) and timeout(1) use them. */
enum { CAPA_EXIT_FAILED = 125, CAPA_EXIT_REFUSED = 126, CAPA_EXIT_NOT_FOUND = 127 };

/* Runs path (argv[0] as the program sees it) with the signal mask program_mask, and supervises
 * its tree until the last process of it is gone; then exits with the program's status (128+N
 * for a signal N). Returns CAPA_EXIT_FAILED only when it could not start. */
int capa_supervise(const char *path, char *const argv[], const sigset_t *program_mask);

#endif
