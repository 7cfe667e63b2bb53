/*
 * capa-run: runs an unmodified program with the CAPA LD_PRELOAD library (libcapa_preload.so,
 * beside this program), so its name lookups ask the gateway for CAPA allocations and its
 * sockets are pinned to them, under the seccomp supervisor (supervise.h) that pins what the
 * library cannot reach. Exit codes follow env(1)/timeout(1): the program's own, 125 capa-run
 * itself failed (bad flags, library missing, supervisor died), 126 the program cannot run under
 * capa-run (setuid/setgid, file capabilities, other machine), 127 program not found, 128+N when
 * the program was killed by signal N (as shells report it).
 *
 * Three processes: this launcher, which waits; the supervisor it forks; the program the
 * supervisor forks and execs. The launcher outlives the supervisor to say so if it dies, and
 * then settles the ledger and tidies the interface.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/address_sweep.h"
#include "../core/capa_codec.h"
#include "../preload/config.h"
#include "../supervisor/supervise.h"
#include "program.h"
#include "settle.h"

#define MAX_TIMEOUT_MS 600000
#define PREFIX_TEXT_MAX (CAPA_ADDRESS_TEXT_MAX + 4)

static const char HELP[] =
    "capa-run [options] -- <program> [args...]\n"
    "\n"
    "Options:\n"
    "      --server        CAPA server ip[:port] or [ipv6]:port (default port 53), in order; repeat or\n"
    "                      comma-separate. Default: the nameservers of /etc/resolv.conf (CAPA_SERVER)\n"
    "      --strict        Where the library runs without the supervisor, refuse (EPERM) an exec it cannot follow\n"
    "                      (an environment without LD_PRELOAD, a static or set-user-ID program) instead of naming\n"
    "                      it on stderr; under capa-run the supervisor pins those, so nothing is left to refuse\n"
    "                      (CAPA_STRICT)\n"
    "      --quiet         Keep the library's CAPA error lines off stderr (CAPA_QUIET)\n"
    "      --log FILE      Append one JSON line per CAPA event (allocate, pin, release, direct, error) to this file\n"
    "                      (CAPA_LOG)\n"
    "      --exempt CIDR   Destination prefix (CIDR or one address) connected without CAPA; repeat for more\n"
    "                      (CAPA_EXEMPT)\n"
    "      --interface IF  Interface to add allocated addresses to when they are not local yet; needs CAP_NET_ADMIN\n"
    "                      (CAPA_INTERFACE)\n"
    "      --address-idle S\n"
    "                      With --interface (or CAPA_INTERFACE): when the program ends, remove each address CAPA\n"
    "                      added to the interface that no socket uses and that an end at least this many seconds\n"
    "                      earlier found unused too                                               [default: 60]\n"
    "      --timeout MS    Deadline of one CAPA lookup in ms, default 2000 (CAPA_TIMEOUT_MS)\n"
    "  -h, --help          Show help\n"
    "\n"
    "Examples:\n"
    "  capa-run --server 127.0.0.1:5300 -- curl http://outside.test:8080/\n"
    "                      fetch through a loopback CAPA gateway\n"
    "\n"
    "Runs <program> with the CAPA LD_PRELOAD library: getaddrinfo/gethostbyname ask the CAPA server for\n"
    "_<port>._<proto>.<host> and return the destination address; connect (and the first send of an unbound UDP\n"
    "socket) binds the socket to the allocated (address, port) before it goes out; close hands the allocation back.\n"
    "A CAPA failure fails the lookup or the connect: nothing is connected unpinned. Every program runs under a\n"
    "seccomp supervisor that pins what the library cannot reach (static programs, children that drop LD_PRELOAD);\n"
    "set-user-ID and capability-carrying programs are refused (the dynamic linker would not load the library, and\n"
    "no-new-privs would run them without their privileges). Exit codes: the program's own; 125 capa-run failed; 126\n"
    "the program cannot run under capa-run; 127 not found.\n";

/* What the flags asked for, as the library's variables spell it. */
struct launch {
  char servers[CAPA_MAX_SERVERS * CAPA_SERVER_TEXT_MAX];
  int n_servers, servers_given;
  char exempt[CAPA_MAX_EXEMPT * PREFIX_TEXT_MAX];
  int n_exempt, exempt_given;
  char log[4096];
  int quiet, strict;
  const char *interface;
  double address_idle_s;
  const char *timeout;
};

__attribute__((format(printf, 2, 3), noreturn)) static void quit(int code, const char *fmt, ...) {
  va_list ap;
  fputs("capa-run: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(code);
}

/* A command line that is not capa-run's: the problem and where the flags are explained. */
__attribute__((noreturn)) static void usage_error(const char *what, const char *arg) {
  fprintf(stderr, "capa-run: %s%s\nRun capa-run --help for the flags.\n", what, arg);
  exit(CAPA_EXIT_FAILED);
}

/* Appends one comma-separated item to list. */
static void append(char *list, size_t size, const char *item) {
  size_t n = strlen(list);
  snprintf(list + n, size - n, "%s%s", n > 0 ? "," : "", item);
}

/* Calls add on every comma-separated item of value, spaces around it trimmed. */
static void for_each_item(struct launch *l, const char *value, void (*add)(struct launch *l, const char *item, size_t n)) {
  for (const char *p = value; *p != '\0';) {
    size_t n = strcspn(p, ","), skip = strspn(p, " \t");
    if (skip < n) {
      size_t len = n - skip;
      while (len > 0 && strchr(" \t", p[skip + len - 1]) != NULL) len--;
      add(l, p + skip, len);
    }
    p += n + (p[n] == ',');
  }
}

static void add_server(struct launch *l, const char *item, size_t n) {
  char why[256];
  struct capa_server s;
  if (capa_server_parse(item, n, &s, why, sizeof why) < 0) quit(CAPA_EXIT_FAILED, "%s", why);
  if (l->n_servers++ == CAPA_MAX_SERVERS) quit(CAPA_EXIT_FAILED, "--server: at most %d servers", CAPA_MAX_SERVERS);
  append(l->servers, sizeof l->servers, s.text);
}

static void add_exempt(struct launch *l, const char *item, size_t n) {
  char why[256], text[CAPA_ADDRESS_TEXT_MAX], canonical[PREFIX_TEXT_MAX];
  struct capa_prefix pfx;
  if (capa_prefix_parse(item, n, &pfx, why, sizeof why) < 0) quit(CAPA_EXIT_FAILED, "--exempt %s", why);
  if (l->n_exempt++ == CAPA_MAX_EXEMPT) quit(CAPA_EXIT_FAILED, "--exempt: at most %d prefixes", CAPA_MAX_EXEMPT);
  capa_ip_format(&pfx.ip, text, sizeof text);
  snprintf(canonical, sizeof canonical, "%s/%u", text, pfx.bits);
  append(l->exempt, sizeof l->exempt, canonical);
}

static int is_interface_name(const char *name) {
  size_t n = strlen(name);
  return n >= 1 && n <= 15 && strcspn(name, " \t\n\r\f\v/:") == n;
}

/* The flags; returns the index of the program in argv. */
static int parse_flags(int argc, char **argv, struct launch *l) {
  enum { SERVER = 256, STRICT, QUIET, LOG, EXEMPT, INTERFACE, ADDRESS_IDLE, TIMEOUT };
  static const struct option options[] = {
      {"server", required_argument, NULL, SERVER},   {"strict", no_argument, NULL, STRICT},
      {"quiet", no_argument, NULL, QUIET},           {"log", required_argument, NULL, LOG},
      {"exempt", required_argument, NULL, EXEMPT},   {"interface", required_argument, NULL, INTERFACE},
      {"address-idle", required_argument, NULL, ADDRESS_IDLE}, {"timeout", required_argument, NULL, TIMEOUT},
      {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0}};
  char *end;
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, "+:h", options, NULL)) != -1;) {
    switch (c) {
    case SERVER: l->servers_given = 1, for_each_item(l, optarg, add_server); break;
    case STRICT: l->strict = 1; break;
    case QUIET: l->quiet = 1; break;
    case LOG:
      if (optarg[0] == '\0' || capa_absolute_path(optarg, l->log, sizeof l->log) < 0) quit(CAPA_EXIT_FAILED, "--log \"%s\" is not a file name", optarg);
      break;
    case EXEMPT: l->exempt_given = 1, for_each_item(l, optarg, add_exempt); break;
    case INTERFACE: l->interface = optarg; break;
    case ADDRESS_IDLE:
      l->address_idle_s = strtod(optarg, &end);
      if (optarg[0] == '\0' || *end != '\0' || !(l->address_idle_s >= 0 && l->address_idle_s <= 1e12)) {
        quit(CAPA_EXIT_FAILED, "--address-idle must be a number of seconds >= 0, got %s", optarg);
      }
      break;
    case TIMEOUT: l->timeout = optarg; break;
    case 'h': fputs(HELP, stdout); exit(0);
    case ':': usage_error("Not enough arguments following: ", argv[optind - 1] + strspn(argv[optind - 1], "-")); break;
    default: {
      const char *arg = argv[optind - 1];
      char flag[2] = {(char)optopt, '\0'};
      usage_error("Unknown argument: ", optopt != 0 ? flag : arg + strspn(arg, "-"));
    }
    }
  }
  if (l->servers_given && l->n_servers == 0) quit(CAPA_EXIT_FAILED, "--server needs at least one ip[:port]");
  if (l->interface != NULL && !is_interface_name(l->interface)) {
    quit(CAPA_EXIT_FAILED, "--interface \"%s\" is not an interface name (1-15 characters, no spaces, / or :)", l->interface);
  }
  if (l->timeout != NULL) {
    long ms = strtol(l->timeout, &end, 10);
    if (l->timeout[0] == '\0' || *end != '\0' || ms < 1 || ms > MAX_TIMEOUT_MS) {
      quit(CAPA_EXIT_FAILED, "--timeout must be a whole number of ms, 1-%d, got %s", MAX_TIMEOUT_MS, l->timeout);
    }
  }
  if (optind >= argc) quit(CAPA_EXIT_FAILED, "no program given: capa-run [options] -- <program> [args...]");
  return optind;
}

/* The flags as the library's environment variables, and the library as the program's CAPA_PRELOAD. */
static void set_environment(const struct launch *l, const char *preload, const char *ledger) {
  if (l->servers_given) setenv("CAPA_SERVER", l->servers, 1);
  if (l->exempt_given) setenv("CAPA_EXEMPT", l->exempt, 1);
  if (l->log[0] != '\0') setenv("CAPA_LOG", l->log, 1);
  if (l->quiet) setenv("CAPA_QUIET", "1", 1);
  if (l->strict) setenv("CAPA_STRICT", "1", 1);
  if (l->interface != NULL) setenv("CAPA_INTERFACE", l->interface, 1);
  if (l->timeout != NULL) setenv("CAPA_TIMEOUT_MS", l->timeout, 1);
  setenv("CAPA_LEDGER", ledger, 1);
  unsetenv("LD_PRELOAD");
  if (preload != NULL) setenv("CAPA_PRELOAD", preload, 1);
  else unsetenv("CAPA_PRELOAD");
}

/* The library beside this program (build/Release/): its path into out. */
static void library_path(char *out, size_t len) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) quit(CAPA_EXIT_FAILED, "cannot find where capa-run is installed (/proc/self/exe: %s)", strerror(errno));
  self[n] = '\0';
  *strrchr(self, '/') = '\0';
  if (snprintf(out, len, "%s/libcapa_preload.so", self) >= (int)len) quit(CAPA_EXIT_FAILED, "the package folder's path is too long");
}

/* LD_PRELOAD with the library first (glibc separates entries by spaces or colons). */
static void preload_value(const char *library, char *out, size_t len) {
  const char *rest = getenv("LD_PRELOAD");
  if (strpbrk(library, " \t\n:") != NULL) {
    quit(CAPA_EXIT_FAILED, "the capa-run library path \"%s\" holds a space or colon, which LD_PRELOAD cannot carry; install the package in another folder", library);
  }
  rest = rest != NULL ? rest + strspn(rest, " \t\n") : "";
  size_t n = strlen(rest);
  while (n > 0 && strchr(" \t\n", rest[n - 1]) != NULL) n--;
  if (snprintf(out, len, n > 0 ? "%s:%.*s" : "%s", library, (int)n, rest) >= (int)len) quit(CAPA_EXIT_FAILED, "LD_PRELOAD is too long");
}

/* Where the ledger goes: a folder in memory where there is one (a ledger on ext4 costs each run
 * 0.1-0.2 ms of journal for its mkdir and rmdir), else the temporary folder. */
static const char *runtime_folder(void) {
  const char *runtime = getenv("XDG_RUNTIME_DIR"), *tmp = getenv("TMPDIR");
  if (runtime != NULL && runtime[0] == '/' && access(runtime, W_OK | X_OK) == 0) return runtime;
  if (access("/dev/shm", W_OK | X_OK) == 0) return "/dev/shm";
  return tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp";
}

/* SIGKILL and the others that end a process, by name (sigabbrev_np is glibc's alone). */
static const char *signal_name(int sig) {
  static const struct { int sig; const char *name; } names[] = {
      {SIGKILL, "SIGKILL"}, {SIGTERM, "SIGTERM"}, {SIGSEGV, "SIGSEGV"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},
      {SIGILL, "SIGILL"},   {SIGFPE, "SIGFPE"},   {SIGINT, "SIGINT"},   {SIGHUP, "SIGHUP"},   {SIGQUIT, "SIGQUIT"},
      {SIGSYS, "SIGSYS"},   {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"},
  };
  static char other[24];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (names[i].sig == sig) return names[i].name;
  }
  snprintf(other, sizeof other, "signal %d", sig);
  return other;
}

/* Forks the supervisor and waits for it, passing capa-run's signals on; its status. */
static int supervise(const char *path, char **argv) {
  static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&mask, forwarded[i]);
  sigprocmask(SIG_BLOCK, &mask, &old);
  pid_t supervisor = fork();
  if (supervisor < 0) quit(CAPA_EXIT_FAILED, "cannot start the supervisor: %s", strerror(errno));
  if (supervisor == 0) {
    prctl(PR_SET_NAME, "capa-supervise");
    _exit(capa_supervise(path, argv, &old));
  }
  for (;;) {
    siginfo_t info;
    int status;
    if (sigwaitinfo(&mask, &info) < 0) continue;
    if (info.si_signo != SIGCHLD) kill(supervisor, info.si_signo);
    else if (waitpid(supervisor, &status, WNOHANG) == supervisor) return status;
  }
}

int main(int argc, char **argv) {
  struct launch l = {.address_idle_s = CAPA_ADDRESS_IDLE_MS / 1000.0};
  char library[4096], path[4096], why[1024], preload[8192], ledger[4200];
  struct capa_elf_id library_id;
  char **command = argv + parse_flags(argc, argv, &l);
  library_path(library, sizeof library);
  if (access(library, X_OK) < 0 || capa_elf_id(library, &library_id) < 0) {
    quit(CAPA_EXIT_FAILED, "the CAPA library %s is missing; build it with \"npx node-gyp rebuild\" in the package folder", library);
  }
  if (capa_find_program(command[0], path, sizeof path) < 0) {
    quit(CAPA_EXIT_NOT_FOUND, "%s: no such program%s", command[0], strchr(command[0], '/') != NULL ? "" : " in PATH");
  }
  enum capa_reach how = capa_program_reach(path, &library_id, why, sizeof why);
  if (how == CAPA_REACH_REFUSED) quit(CAPA_EXIT_REFUSED, "%s", why);
  preload_value(library, preload, sizeof preload);
  snprintf(ledger, sizeof ledger, "%s/capa-run-ledger-XXXXXX", runtime_folder());
  if (mkdtemp(ledger) == NULL) quit(CAPA_EXIT_FAILED, "cannot make the ledger folder %s: %s", ledger, strerror(errno));
  set_environment(&l, how == CAPA_REACH_PRELOAD ? preload : NULL, ledger);
  int status = supervise(path, command);
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "capa-run: the CAPA supervisor of %s died (%s); the program's further connects fail, none goes out unpinned\n",
            command[0], signal_name(WTERMSIG(status)));
  }
  /* The last resort against leaks: what a killed program (or its children) still held goes
   * back, and addresses nothing uses any more come off the interface. */
  capa_ledger_settle(ledger);
  const char *ifname = getenv("CAPA_INTERFACE");
  if (ifname != NULL && ifname[0] != '\0') {
    int rc = capa_sweep_addresses(ifname, (int64_t)(l.address_idle_s * 1000 + 0.5));
    if (rc < 0 && rc != -EPERM && rc != -ENODEV && !capa_config()->quiet) {
      fprintf(stderr, "capa-run: could not tidy the CAPA addresses of %s: %s\n", ifname, strerror(-rc));
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : CAPA_EXIT_FAILED;
}
