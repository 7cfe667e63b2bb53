/*
 * What capa-run decides about the program before it starts it: where it is (as execvp would find
 * it), and how capa-run reaches it: through LD_PRELOAD where the dynamic linker loads the
 * library (an ELF program with an interpreter, of the library's class and machine; a script
 * whose interpreter is such a program), through the seccomp supervisor alone (a statically
 * linked one), or not at all (set-user-ID, set-group-ID, file capabilities, another machine).
 */
#ifndef CAPA_LAUNCHER_PROGRAM_H
#define CAPA_LAUNCHER_PROGRAM_H

#include <stddef.h>

enum capa_reach { CAPA_REACH_PRELOAD, CAPA_REACH_SUPERVISOR, CAPA_REACH_REFUSED };

/* An ELF file's class (32 or 64) and machine (e_machine). */
struct capa_elf_id {
  int elf_class;
  unsigned machine;
};

/* path made absolute (against the working folder) and normalised (".", ".." and "//" folded),
 * as Node's path.resolve spells it: 0, or -1 when it does not fit. */
int capa_absolute_path(const char *path, char *out, size_t len);

/* The program's absolute path as execvp would find it (a name with a slash as it is, else the
 * first executable regular file of that name in PATH): 0, or -1 when there is none. */
int capa_find_program(const char *name, char *out, size_t len);

/* The class and machine of an ELF file: 0, or -1 when it is not one. */
int capa_elf_id(const char *path, struct capa_elf_id *id);

/* How a library of class and machine `library` reaches the program at path (following #!
 * interpreters a few levels); for CAPA_REACH_REFUSED, why (a sentence for people). */
enum capa_reach capa_program_reach(const char *path, const struct capa_elf_id *library, char *why, size_t why_len);

#endif
