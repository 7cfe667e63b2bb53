/*
 * The libc functions capa-run interposes, reached through dlsym(RTLD_NEXT), and the thread-local
 * guard that sends the library's own socket calls (DNS, netlink, pinning) straight to them.
 * Hooks can run before constructors (another library's constructor may connect), so the table
 * is resolved lazily, once, on first use.
 */
#ifndef CAPA_PRELOAD_REAL_H
#define CAPA_PRELOAD_REAL_H

#include <netdb.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>

struct capa_real {
  int (*getaddrinfo)(const char *node, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res);
  struct hostent *(*gethostbyname)(const char *name);
  struct hostent *(*gethostbyname2)(const char *name, int af);
  int (*gethostbyname_r)(const char *name, struct hostent *ret, char *buf, size_t buflen,
                         struct hostent **result, int *h_errnop);
  int (*gethostbyname2_r)(const char *name, int af, struct hostent *ret, char *buf,
                          size_t buflen, struct hostent **result, int *h_errnop);
  int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
  int (*bind)(int fd, const struct sockaddr *addr, socklen_t len);
  ssize_t (*sendto)(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
                    socklen_t tolen);
  ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
  int (*close)(int fd);
  void (*closefrom)(int lowfd);
  int (*dup2)(int oldfd, int newfd);
  int (*dup3)(int oldfd, int newfd, int flags);
  long (*syscall)(long number, ...);
  void (*_exit)(int status) __attribute__((noreturn));
  int (*execve)(const char *path, char *const argv[], char *const envp[]);
  int (*execvpe)(const char *file, char *const argv[], char *const envp[]);
  int (*posix_spawn)(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                     const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);
  int (*posix_spawnp)(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                      const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);
};

/* The next definitions after this library (normally glibc's). */
const struct capa_real *capa_real(void);

/* While entered (nestable), every hook on this thread is a plain call to the real function. */
void capa_guard_enter(void);
void capa_guard_leave(void);
int capa_guarded(void);

#endif
