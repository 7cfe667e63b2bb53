/* Execs that escape the library: see exec_check.h. */
#define _GNU_SOURCE
#include "exec_check.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define MAX_PHNUM 64

/* This library's own file, as LD_PRELOAD must name it. */
static const char *own_path(void) {
  Dl_info info;
  return dladdr((void *)capa_before_exec, &info) != 0 && info.dli_fname != NULL ? info.dli_fname : "libcapa_preload.so";
}

static int preloads_us(char *const envp[]) {
  const char *self = own_path();
  for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
    if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0 && strstr(envp[i] + 11, self) != NULL) return 1;
  }
  return 0;
}

/* PATH search as execvp does it, into out (PATH_MAX); 0 found, -1 not. */
static int search_path(const char *file, char *out) {
  const char *path = getenv("PATH");
  if (path == NULL) path = "/bin:/usr/bin";
  while (*path != '\0') {
    size_t n = strcspn(path, ":");
    if (snprintf(out, PATH_MAX, "%.*s%s%s", (int)n, n ? path : ".", "/", file) < PATH_MAX && access(out, X_OK) == 0) return 0;
    path += n + (path[n] == ':');
  }
  return -1;
}

/* 1 when the file is an ELF program without an interpreter (PT_INTERP): a static one. */
static int is_static_elf(int fd) {
  unsigned char ident[EI_NIDENT];
  if (pread(fd, ident, sizeof ident, 0) != (ssize_t)sizeof ident || memcmp(ident, ELFMAG, SELFMAG) != 0) return 0;
  int is64 = ident[EI_CLASS] == ELFCLASS64;
  Elf64_Ehdr eh64;
  Elf32_Ehdr eh32;
  uint64_t phoff;
  unsigned phnum, phentsize;
  if (is64) {
    if (pread(fd, &eh64, sizeof eh64, 0) != (ssize_t)sizeof eh64) return 0;
    phoff = eh64.e_phoff, phnum = eh64.e_phnum, phentsize = eh64.e_phentsize;
  } else {
    if (pread(fd, &eh32, sizeof eh32, 0) != (ssize_t)sizeof eh32) return 0;
    phoff = eh32.e_phoff, phnum = eh32.e_phnum, phentsize = eh32.e_phentsize;
  }
  if (phnum > MAX_PHNUM || phentsize < sizeof(uint32_t)) return 0;
  for (unsigned i = 0; i < phnum; i++) {
    uint32_t type;
    if (pread(fd, &type, sizeof type, (off_t)(phoff + (uint64_t)i * phentsize)) != (ssize_t)sizeof type) return 0;
    if (type == PT_INTERP) return 0;
  }
  return 1; /* same byte order as this machine: a program for another one does not exec anyway */
}

/* Why the program at path would escape the library, or NULL. */
static const char *escapes(const char *path) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL; /* the exec itself will report it */
  const char *why = NULL;
  if (fstat(fd, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID))) why = "it is set-user-ID or set-group-ID, so the dynamic linker ignores LD_PRELOAD";
  else if (is_static_elf(fd)) why = "it is statically linked";
  close(fd);
  return why;
}

int capa_before_exec(const char *file, int search, char *const envp[]) {
  const struct capa_config *cfg = capa_config();
  char found[PATH_MAX];
  const char *path = file;
  /* Under the supervisor nothing escapes: it pins whatever the library cannot follow. */
  if (file == NULL || cfg->supervisor[0] != '\0') return 0;
  if (search && strchr(file, '/') == NULL) path = search_path(file, found) == 0 ? found : NULL;
  const char *why = !preloads_us(envp) ? "its environment drops LD_PRELOAD" : path != NULL ? escapes(path) : NULL;
  if (why == NULL) return 0;
  if (cfg->strict) {
    capa_notice(cfg, "refusing to run %s without CAPA: %s, so its connections would not be pinned (capa-run --strict)", file, why);
    return -EPERM;
  }
  capa_notice(cfg, "%s will run without CAPA: %s, so its connections are not pinned (capa-run --strict refuses this)", file, why);
  return 0;
}
