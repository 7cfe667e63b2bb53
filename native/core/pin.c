/* Socket pinning: see pin.h. */
#define _GNU_SOURCE
#include "pin.h"

#include "sockaddr.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *capa_pin_step_syscall(enum capa_pin_step step) {
  switch (step) {
  case CAPA_STEP_NONE: return "";
  case CAPA_STEP_SOCKET: return "socket";
  case CAPA_STEP_BIND: return "bind";
  default: return "setsockopt";
  }
}

const char *capa_pin_step_option(enum capa_pin_step step) {
  switch (step) {
  case CAPA_STEP_REUSEADDR: return "SO_REUSEADDR";
  case CAPA_STEP_FREEBIND: return "IP_FREEBIND";
  case CAPA_STEP_V6ONLY: return "IPV6_V6ONLY";
  case CAPA_STEP_BINDTODEVICE: return "SO_BINDTODEVICE";
  case CAPA_STEP_MARK: return "SO_MARK";
  default: return NULL;
  }
}

int capa_addr_len(int family) {
  if (family == AF_INET) return 4;
  if (family == AF_INET6) return 16;
  return -EAFNOSUPPORT;
}

/* Records the failed step and turns errno into the return code. */
static int fail(enum capa_pin_step step, enum capa_pin_step *failed) {
  int err = errno;
  if (failed) *failed = step;
  return -err;
}

static int set_opt(int fd, int level, int name, const void *value, socklen_t len,
                   enum capa_pin_step step, enum capa_pin_step *failed) {
  return setsockopt(fd, level, name, value, len) < 0 ? fail(step, failed) : 0;
}

static int is_v4_mapped(const uint8_t *addr) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(addr, prefix, sizeof prefix) == 0;
}

/* Options every pinned socket gets whatever its address: the allocation may
 * be reused right after a previous flow (hold-down is the GRM's job) and the
 * address may not be configured yet when we bind. */
static int set_pin_options(int fd, int family, enum capa_pin_step *failed) {
  const int one = 1;
  int rc = set_opt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one, CAPA_STEP_REUSEADDR, failed);
  if (rc == 0 && family == AF_INET)
    rc = set_opt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one, CAPA_STEP_FREEBIND, failed);
  if (rc == 0 && family == AF_INET6)
    rc = set_opt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one, CAPA_STEP_FREEBIND, failed);
  return rc;
}

static int set_user_options(int fd, const struct capa_pin_opts *opts,
                            enum capa_pin_step *failed) {
  int rc = 0;
  if (opts->device)
    rc = set_opt(fd, SOL_SOCKET, SO_BINDTODEVICE, opts->device,
                 (socklen_t)strlen(opts->device) + 1, CAPA_STEP_BINDTODEVICE, failed);
  if (rc == 0 && opts->has_mark)
    rc = set_opt(fd, SOL_SOCKET, SO_MARK, &opts->mark, sizeof opts->mark, CAPA_STEP_MARK,
                 failed);
  return rc;
}


int capa_pin_prepare(int fd, int family, const struct capa_pin_opts *opts,
                     enum capa_pin_step *failed) {
  static const struct capa_pin_opts no_opts;
  if (capa_addr_len(family) < 0) {
    if (failed) *failed = CAPA_STEP_SOCKET;
    return -EAFNOSUPPORT;
  }
  int rc = set_pin_options(fd, family, failed);
  return rc == 0 ? set_user_options(fd, opts ? opts : &no_opts, failed) : rc;
}

int capa_pin_bind(int fd, int family, const uint8_t *addr, uint16_t port,
                  enum capa_pin_step *failed) {
  struct sockaddr_storage ss;
  if (capa_addr_len(family) < 0) {
    if (failed) *failed = CAPA_STEP_BIND;
    return -EAFNOSUPPORT;
  }
  if (family == AF_INET6) {
    /* A v4-mapped allocation (dual-stack app socket) needs V6ONLY off. */
    const int v6only = !is_v4_mapped(addr);
    int rc = set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only, CAPA_STEP_V6ONLY, failed);
    if (rc < 0) return rc;
  }
  struct capa_address a = {.family = family == AF_INET ? 4 : 6};
  memcpy(a.addr, addr, family == AF_INET ? 4 : 16);
  socklen_t len = capa_sockaddr(&a, port, &ss);
  return bind(fd, (struct sockaddr *)&ss, len) < 0 ? fail(CAPA_STEP_BIND, failed) : 0;
}

int capa_pin_fd(int fd, int family, const uint8_t *addr, uint16_t port,
                const struct capa_pin_opts *opts, enum capa_pin_step *failed) {
  int rc = capa_pin_prepare(fd, family, opts, failed);
  return rc == 0 ? capa_pin_bind(fd, family, addr, port, failed) : rc;
}

int capa_pin_open(int family, int type, const struct capa_pin_opts *opts, int *fd_out,
                  enum capa_pin_step *failed) {
  if (type != SOCK_STREAM && type != SOCK_DGRAM) {
    if (failed) *failed = CAPA_STEP_SOCKET;
    return -ESOCKTNOSUPPORT;
  }
  int flags = SOCK_CLOEXEC | (opts && opts->nonblock ? SOCK_NONBLOCK : 0);
  int fd = socket(family, type | flags, 0);
  if (fd < 0) return fail(CAPA_STEP_SOCKET, failed);
  int rc = capa_pin_prepare(fd, family, opts, failed);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}

int capa_pin_socket(int family, int type, const uint8_t *addr, uint16_t port,
                    const struct capa_pin_opts *opts, int *fd_out,
                    enum capa_pin_step *failed) {
  int fd = -1;
  int rc = capa_pin_open(family, type, opts, &fd, failed);
  if (rc < 0) return rc;
  rc = capa_pin_bind(fd, family, addr, port, failed);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}
