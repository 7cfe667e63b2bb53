/*
 * Execs that escape LD_PRELOAD: a program started with an environment that drops the library
 * (env -i, env -u LD_PRELOAD), a statically linked program, or a set-user-ID/set-group-ID one
 * (the dynamic linker ignores LD_PRELOAD for it) would run with its connections unpinned.
 * The library cannot follow it there; it says so on stderr, and with CAPA_STRICT (capa-run
 * --strict) refuses the exec with EPERM. The seccomp supervisor is what covers such programs.
 */
#ifndef CAPA_PRELOAD_EXEC_CHECK_H
#define CAPA_PRELOAD_EXEC_CHECK_H

/* 0 to let the exec go ahead, -EPERM to refuse it. `file` is searched in PATH when `search` and
 * it holds no slash (execvp); envp is the new program's environment. */
int capa_before_exec(const char *file, int search, char *const envp[]);

#endif
