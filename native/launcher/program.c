/* Finding and judging the program capa-run runs: see program.h. */
#define _GNU_SOURCE
#include "program.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

/* `#!` chains longer than this are not followed (the kernel itself allows a few levels). */
#define MAX_SCRIPT_DEPTH 4
#define SHEBANG_MAX 256
#define PHDRS_MAX 65536

extern char **environ;

int capa_absolute_path(const char *path, char *out, size_t len) {
  char joined[8192];
  size_t n = 0;
  if (path[0] == '/') {
    if (snprintf(joined, sizeof joined, "%s", path) >= (int)sizeof joined) return -1;
  } else {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) == NULL || snprintf(joined, sizeof joined, "%s/%s", cwd, path) >= (int)sizeof joined) return -1;
  }
  /* Fold the segments: "" and "." vanish, ".." takes the last one off. */
  for (char *seg = strtok(joined, "/"); seg != NULL; seg = strtok(NULL, "/")) {
    if (strcmp(seg, ".") == 0) continue;
    if (strcmp(seg, "..") == 0) {
      while (n > 0 && out[--n] != '/') {}
      continue;
    }
    size_t s = strlen(seg);
    if (n + 1 + s + 1 > len) return -1;
    out[n++] = '/';
    memcpy(out + n, seg, s);
    n += s;
  }
  if (n == 0) {
    if (len < 2) return -1;
    out[n++] = '/';
  }
  out[n] = '\0';
  return 0;
}

static int is_executable_file(const char *path) {
  struct stat st;
  return access(path, X_OK) == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int capa_find_program(const char *name, char *out, size_t len) {
  char candidate[4096];
  if (strchr(name, '/') != NULL) return is_executable_file(name) ? capa_absolute_path(name, out, len) : -1;
  const char *path = getenv("PATH");
  for (const char *dir = path != NULL ? path : "";; dir += strcspn(dir, ":") + 1) {
    int dir_len = (int)strcspn(dir, ":");
    if (snprintf(candidate, sizeof candidate, "%.*s/%s", dir_len, dir_len > 0 ? dir : ".", name) < (int)sizeof candidate &&
        is_executable_file(candidate)) {
      return capa_absolute_path(candidate, out, len);
    }
    if (dir[dir_len] == '\0') return -1;
  }
}

/* ---- what the file is --------------------------------------------------------------------- */

struct executable {
  enum { EXE_ELF, EXE_SCRIPT, EXE_OTHER } kind;
  struct capa_elf_id id;
  int has_interpreter;           /* ELF: a PT_INTERP header (a dynamically linked program) */
  char interpreter[SHEBANG_MAX]; /* script: the #! program */
};

static uint64_t field(const uint8_t *p, int bytes, int little) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= (uint64_t)p[little ? i : bytes - 1 - i] << (8 * i);
  return v;
}

/* Whether the program headers hold PT_INTERP; a table that cannot be read counts as none. */
static int elf_has_interpreter(int fd, const uint8_t *head, int is64, int little) {
  uint64_t phoff = field(head + (is64 ? 0x20 : 0x1c), is64 ? 8 : 4, little);
  uint64_t entsize = field(head + (is64 ? 0x36 : 0x2a), 2, little), count = field(head + (is64 ? 0x38 : 0x2c), 2, little);
  uint64_t size = entsize * count;
  if (entsize < 4 || size > PHDRS_MAX) return 0;
  uint8_t *table = malloc(size > 0 ? size : 1);
  int found = 0;
  if (table != NULL && pread(fd, table, size, (off_t)phoff) == (ssize_t)size) {
    for (uint64_t i = 0; i < count && !found; i++) found = field(table + i * entsize, 4, little) == PT_INTERP;
  }
  free(table);
  return found;
}

static void inspect(int fd, struct executable *x) {
  uint8_t head[SHEBANG_MAX];
  ssize_t n = pread(fd, head, sizeof head - 1, 0);
  memset(x, 0, sizeof *x);
  x->kind = EXE_OTHER;
  if (n >= 64 && memcmp(head, ELFMAG, SELFMAG) == 0) {
    int is64 = head[EI_CLASS] == ELFCLASS64, little = head[EI_DATA] == ELFDATA2LSB;
    x->kind = EXE_ELF;
    x->id = (struct capa_elf_id){.elf_class = is64 ? 64 : 32, .machine = (unsigned)field(head + 0x12, 2, little)};
    x->has_interpreter = elf_has_interpreter(fd, head, is64, little);
  } else if (n > 2 && head[0] == '#' && head[1] == '!') {
    head[n] = '\0';
    char *p = (char *)head + 2;
    p += strspn(p, " \t");
    size_t len = strcspn(p, " \t\r\n");
    if (len > 0) {
      x->kind = EXE_SCRIPT;
      memcpy(x->interpreter, p, len);
    }
  }
}

int capa_elf_id(const char *path, struct capa_elf_id *id) {
  struct executable x;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  inspect(fd, &x);
  close(fd);
  *id = x.id;
  return x.kind == EXE_ELF ? 0 : -1;
}

/* ---- privileges --------------------------------------------------------------------------- */

/* The file capabilities as getcap prints them ("cap_net_raw=ep"), asked of getcap only when
 * the file has some; a plain description when getcap cannot tell. */
static void describe_capabilities(const char *path, char *out, size_t len) {
  char text[512];
  size_t got = 0;
  int pipe_fds[2], status;
  pid_t pid;
  posix_spawn_file_actions_t actions;
  snprintf(out, len, "security.capability is set");
  if (pipe2(pipe_fds, O_CLOEXEC) < 0) return;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  char *argv[] = {"getcap", (char *)path, NULL};
  int spawned = posix_spawnp(&pid, "getcap", &actions, NULL, argv, environ) == 0;
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  for (ssize_t n; spawned && got < sizeof text - 1 && (n = read(pipe_fds[0], text + got, sizeof text - 1 - got)) > 0;) got += (size_t)n;
  close(pipe_fds[0]);
  if (!spawned || waitpid(pid, &status, 0) < 0) return;
  text[got] = '\0';
  /* "<path> cap_net_raw=ep\n": what follows the path, trimmed. */
  char *p = strncmp(text, path, strlen(path)) == 0 ? text + strlen(path) : text;
  p += strspn(p, " \t\r\n");
  size_t end = strlen(p);
  while (end > 0 && strchr(" \t\r\n", p[end - 1]) != NULL) end--;
  if (end > 0) snprintf(out, len, "%.*s", (int)end, p);
}

/* 1 with why filled for a set-user-ID, set-group-ID or capability-carrying file. */
static int privileged(const char *path, const struct stat *st, char *why, size_t why_len) {
  char caps[256], reason[300];
  if (st->st_mode & S_ISUID) {
    snprintf(reason, sizeof reason, "is set-user-ID");
  } else if (st->st_mode & S_ISGID) {
    snprintf(reason, sizeof reason, "is set-group-ID");
  } else if (getxattr(path, "security.capability", NULL, 0) > 0) {
    describe_capabilities(path, caps, sizeof caps);
    snprintf(reason, sizeof reason, "has file capabilities (%s)", caps);
  } else {
    return 0;
  }
  snprintf(why, why_len, "%s %s; the dynamic linker ignores LD_PRELOAD for such programs (secure execution), so capa-run "
           "cannot hook it \u2014 run an unprivileged copy, or use capa-socket", path, reason);
  return 1;
}

/* ---- reach -------------------------------------------------------------------------------- */

static enum capa_reach reach(const char *path, const struct capa_elf_id *library, char *why, size_t why_len, int depth) {
  struct stat st;
  struct executable x;
  char interpreter[4096];
  if (stat(path, &st) == 0 && privileged(path, &st, why, why_len)) return CAPA_REACH_REFUSED;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return CAPA_REACH_PRELOAD; /* not readable: the exec says what is wrong */
  inspect(fd, &x);
  close(fd);
  if (x.kind == EXE_SCRIPT && depth < MAX_SCRIPT_DEPTH) {
    if (capa_find_program(x.interpreter, interpreter, sizeof interpreter) < 0) return CAPA_REACH_PRELOAD;
    return reach(interpreter, library, why, why_len, depth + 1);
  }
  if (x.kind != EXE_ELF) return CAPA_REACH_PRELOAD;
  if (!x.has_interpreter) return CAPA_REACH_SUPERVISOR;
  if (library->elf_class != x.id.elf_class || library->machine != x.id.machine) {
    snprintf(why, why_len, "%s is a %d-bit program for ELF machine %u, but the capa-run library is %d-bit for machine %u; "
             "the dynamic linker would skip the library and run the program without CAPA \u2014 use a build of the program "
             "for this machine", path, x.id.elf_class, x.id.machine, library->elf_class, library->machine);
    return CAPA_REACH_REFUSED;
  }
  return CAPA_REACH_PRELOAD;
}

enum capa_reach capa_program_reach(const char *path, const struct capa_elf_id *library, char *why, size_t why_len) {
  return reach(path, library, why, why_len, 0);
}
