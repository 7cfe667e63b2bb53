/*
 * The interposed libc symbols: thin. Each one passes straight to libc while this thread is
 * inside the library (the guard), otherwise runs the CAPA step under the guard and then the
 * real function. Only these symbols are exported (the library builds with
 * -fvisibility=hidden).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "exec_check.h"
#include "handback.h"
#include "names.h"
#include "pins.h"
#include "real.h"
#include "terminal.h"

#define EXPORT __attribute__((visibility("default")))

/* The configuration is read as the program starts: a program that clears its environment
 * (env -i) before its first hooked call must still be judged by the settings capa-run gave it. */
__attribute__((constructor)) static void load_config_at_start(void) { capa_config(); }

/* Thread-local result storage of the non-reentrant gethostbyname/gethostbyname2. */
static __thread struct {
  struct hostent entry;
  char buf[640];
} host_storage __attribute__((tls_model("initial-exec")));

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  const struct capa_real *real = capa_real();
  if (capa_guarded()) return real->getaddrinfo(node, service, hints, res);
  capa_guard_enter();
  int rc = capa_getaddrinfo(node, service, hints, res);
  if (rc == CAPA_NAMES_REAL) rc = real->getaddrinfo(node, service, hints, res);
  capa_guard_leave();
  return rc;
}

EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                            struct hostent **result, int *h_errnop) {
  const struct capa_real *real = capa_real();
  if (capa_guarded()) return real->gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
  capa_guard_enter();
  int rc = capa_gethostbyname(name, af, ret, buf, buflen, result, h_errnop);
  if (rc == CAPA_NAMES_REAL) rc = real->gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
  capa_guard_leave();
  return rc;
}

EXPORT int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,
                           int *h_errnop) {
  const struct capa_real *real = capa_real();
  if (capa_guarded()) return real->gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
  capa_guard_enter();
  int rc = capa_gethostbyname(name, AF_INET, ret, buf, buflen, result, h_errnop);
  if (rc == CAPA_NAMES_REAL) rc = real->gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
  capa_guard_leave();
  return rc;
}

EXPORT struct hostent *gethostbyname2(const char *name, int af) {
  const struct capa_real *real = capa_real();
  struct hostent *result = NULL;
  int herr = NETDB_SUCCESS;
  if (capa_guarded()) return real->gethostbyname2(name, af);
  capa_guard_enter();
  int rc = capa_gethostbyname(name, af, &host_storage.entry, host_storage.buf, sizeof host_storage.buf, &result, &herr);
  if (rc == CAPA_NAMES_REAL) result = real->gethostbyname2(name, af);
  else if (result == NULL) h_errno = herr;
  capa_guard_leave();
  return result;
}

EXPORT struct hostent *gethostbyname(const char *name) {
  const struct capa_real *real = capa_real();
  struct hostent *result = NULL;
  int herr = NETDB_SUCCESS;
  if (capa_guarded()) return real->gethostbyname(name);
  capa_guard_enter();
  int rc = capa_gethostbyname(name, AF_INET, &host_storage.entry, host_storage.buf, sizeof host_storage.buf, &result, &herr);
  if (rc == CAPA_NAMES_REAL) result = real->gethostbyname(name);
  else if (result == NULL) h_errno = herr;
  capa_guard_leave();
  return result;
}

/* 1, with errno set, when the CAPA step refused the call (rc is 0 or -errno). */
static int refused(int rc) {
  if (rc >= 0) return 0;
  errno = -rc;
  return 1;
}

/* The socket calls the library has judged (its own, and the program's after the CAPA step), as
 * the system call with the supervisor's token in two arguments the call does not use: the
 * filter lets them by, so the supervisor is asked only about what the library did not see
 * (supervisor_link.h). nr is connect, bind or sendmsg. */
static long judged(long nr, long a0, const void *a1, long a2) {
  const struct capa_config *cfg = capa_config();
  return capa_real()->syscall(nr, a0, (long)a1, a2, 0L, (long)cfg->supervisor_token[0], (long)cfg->supervisor_token[1]);
}

/* connect or bind (nr), or without a supervisor the libc function real. */
static int judged_address_call(long nr, int (*real)(int, const struct sockaddr *, socklen_t), int fd,
                               const struct sockaddr *addr, socklen_t len) {
  return capa_config()->has_token ? (int)judged(nr, fd, addr, len) : real(fd, addr, len);
}

static ssize_t judged_sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (!capa_config()->has_token) return capa_real()->sendmsg(fd, msg, flags);
  return judged(SYS_sendmsg, fd, msg, flags);
}

/* sendto's six arguments leave no room for the token: with one, it is the same sendmsg. */
static ssize_t judged_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
  if (!capa_config()->has_token || to == NULL) return capa_real()->sendto(fd, buf, n, flags, to, tolen);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
  struct msghdr msg = {.msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = &iov, .msg_iovlen = 1};
  return judged(SYS_sendmsg, fd, &msg, flags);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  const struct capa_real *real = capa_real();
  if (capa_guarded()) return judged_address_call(SYS_connect, real->connect, fd, addr, len);
  capa_guard_enter();
  int rc = capa_before_connect(fd, addr, len);
  capa_guard_leave();
  return refused(rc) ? -1 : judged_address_call(SYS_connect, real->connect, fd, addr, len);
}

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  const struct capa_real *real = capa_real();
  if (capa_guarded()) return judged_address_call(SYS_bind, real->bind, fd, addr, len);
  capa_guard_enter();
  int deferred = capa_bind_deferred(fd, addr, len);
  capa_guard_leave();
  return deferred ? 0 : judged_address_call(SYS_bind, real->bind, fd, addr, len);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
  if (capa_guarded() || to == NULL) return judged_sendto(fd, buf, n, flags, to, tolen);
  capa_guard_enter();
  int rc = capa_before_send(fd, to, tolen);
  capa_guard_leave();
  return refused(rc) ? -1 : judged_sendto(fd, buf, n, flags, to, tolen);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (capa_guarded() || msg == NULL || msg->msg_name == NULL) return judged_sendmsg(fd, msg, flags);
  capa_guard_enter();
  int rc = capa_before_send(fd, msg->msg_name, msg->msg_namelen);
  capa_guard_leave();
  return refused(rc) ? -1 : judged_sendmsg(fd, msg, flags);
}

/*
 * Every call that closes descriptors (close, close_range, closefrom, and dup2/dup3 over a
 * descriptor) releases the allocations of the pinned sockets among them once they are gone.
 * Their pins are taken out of the table before the real call, so a number reused by another
 * thread right after it is never mistaken for the old socket, and put back when the call fails.
 */
static void settle(struct capa_pinned_fd *taken, size_t n, int closed, const char *why) {
  for (size_t i = 0; i < n; i++) {
    if (closed) capa_release_pin(&taken[i].pin, why);
    else capa_pins_add(taken[i].fd, &taken[i].pin);
  }
}

static int close_socket(const struct capa_real *real, int fd) {
  struct capa_pinned_fd taken = {.fd = fd};
  if (capa_guarded()) return real->close(fd);
  capa_guard_enter();
  int pinned = capa_take_pin(fd, &taken.pin);
  int rc = real->close(fd);
  int saved = errno;
  /* close() frees the descriptor even when it reports an error (EINTR, EIO). */
  settle(&taken, (size_t)pinned, 1, "close");
  capa_guard_leave();
  errno = saved;
  return rc;
}

EXPORT int close(int fd) { return close_socket(capa_real(), fd); }

/* close_range(2) through the raw system call, which glibc's own close_range also is. */
static long close_range_pinned(const struct capa_real *real, unsigned first, unsigned last, int flags) {
  size_t n = 0;
  if (capa_guarded() || (flags & CLOSE_RANGE_CLOEXEC)) return real->syscall(SYS_close_range, first, last, flags);
  capa_guard_enter();
  struct capa_pinned_fd *taken = capa_pins_remove_range(first, last, &n);
  long rc = real->syscall(SYS_close_range, first, last, flags);
  int saved = errno;
  settle(taken, n, rc == 0, "close_range");
  free(taken);
  capa_guard_leave();
  errno = saved;
  return rc;
}

EXPORT int close_range(unsigned first, unsigned last, int flags) {
  return (int)close_range_pinned(capa_real(), first, last, flags);
}

EXPORT void closefrom(int lowfd) {
  const struct capa_real *real = capa_real();
  size_t n = 0;
  if (capa_guarded() || lowfd < 0) {
    real->closefrom(lowfd);
    return;
  }
  capa_guard_enter();
  struct capa_pinned_fd *taken = capa_pins_remove_range((unsigned)lowfd, UINT_MAX, &n);
  real->closefrom(lowfd); /* cannot fail: glibc aborts the program rather than leave one open */
  int saved = errno;
  settle(taken, n, 1, "closefrom");
  free(taken);
  capa_guard_leave();
  errno = saved;
}

/* dup2/dup3 onto a pinned descriptor close that socket first (flags < 0: dup2). */
static int replace_descriptor(int oldfd, int newfd, int flags) {
  const struct capa_real *real = capa_real();
  struct capa_pinned_fd taken = {.fd = newfd};
  if (capa_guarded() || oldfd == newfd) return flags < 0 ? real->dup2(oldfd, newfd) : real->dup3(oldfd, newfd, flags);
  capa_guard_enter();
  int pinned = capa_take_pin(newfd, &taken.pin);
  int rc = flags < 0 ? real->dup2(oldfd, newfd) : real->dup3(oldfd, newfd, flags);
  int saved = errno;
  settle(&taken, (size_t)pinned, rc >= 0, flags < 0 ? "dup2" : "dup3");
  capa_guard_leave();
  errno = saved;
  return rc;
}

EXPORT int dup2(int oldfd, int newfd) { return replace_descriptor(oldfd, newfd, -1); }

EXPORT int dup3(int oldfd, int newfd, int flags) { return replace_descriptor(oldfd, newfd, flags); }

/* libuv (so Node) closes descriptors with syscall(SYS_close, fd), and programs written before
 * glibc had close_range call it by number; everything else passes through with its six argument
 * registers, as glibc's own syscall() reads them. */
EXPORT long syscall(long number, ...) {
  const struct capa_real *real = capa_real();
  long a[6];
  va_list ap;
  va_start(ap, number);
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_close) return close_socket(real, (int)a[0]);
  if (number == SYS_close_range) return close_range_pinned(real, (unsigned)a[0], (unsigned)a[1], (int)a[2]);
  return real->syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* exit() hands allocations back through the library's destructor; _exit and _Exit skip
 * destructors, so they do it here. */
__attribute__((noreturn)) static void end_process(int status) {
  const struct capa_real *real = capa_real();
  if (!capa_guarded()) {
    capa_guard_enter();
    capa_handback_all("exit");
  }
  real->_exit(status);
}

EXPORT void _exit(int status) { end_process(status); }

EXPORT void _Exit(int status) { end_process(status); }

/* The exec family: a program started so that the library cannot follow it is named on stderr,
 * and refused under CAPA_STRICT (exec_check.h). The l-forms build their argv inside glibc and
 * are not seen here. */
static int exec_allowed(const char *file, int search, char *const envp[]) {
  if (capa_guarded()) return 0;
  capa_guard_enter();
  int rc = capa_before_exec(file, search, envp);
  capa_guard_leave();
  return rc;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  int rc = exec_allowed(path, 0, envp);
  return refused(rc) ? -1 : capa_real()->execve(path, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[]) {
  int rc = exec_allowed(path, 0, environ);
  return refused(rc) ? -1 : capa_real()->execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
  int rc = exec_allowed(file, 1, envp);
  return refused(rc) ? -1 : capa_real()->execvpe(file, argv, envp);
}

EXPORT int execvp(const char *file, char *const argv[]) {
  int rc = exec_allowed(file, 1, environ);
  return refused(rc) ? -1 : capa_real()->execvpe(file, argv, environ);
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                       const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
  int rc = exec_allowed(path, 0, envp);
  return rc < 0 ? -rc : capa_real()->posix_spawn(pid, path, actions, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
  int rc = exec_allowed(file, 1, envp);
  return rc < 0 ? -rc : capa_real()->posix_spawnp(pid, file, actions, attr, argv, envp);
}
