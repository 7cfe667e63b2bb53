/*
 * CAPA terminal side: a socket pinned to the (address, port) the gateway
 * allocated. Plain C99 + POSIX, no Node dependency, no global state: the
 * Node addon and the LD_PRELOAD library both use it.
 *
 * Every function returns 0 (or a documented positive value) on success and
 * -errno on failure.
 */
#ifndef CAPA_PIN_H
#define CAPA_PIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Optional settings applied before bind. Zero-initialise for none. */
struct capa_pin_opts {
  const char *device; /* SO_BINDTODEVICE interface name, or NULL */
  uint32_t mark;      /* SO_MARK value, applied when has_mark != 0 */
  int has_mark;
  int nonblock;       /* capa_pin_socket only: create with SOCK_NONBLOCK */
};

/* The step that failed, so callers can report the system call (Node's
 * err.syscall) and, for setsockopt, which option. */
enum capa_pin_step {
  CAPA_STEP_NONE = 0,
  CAPA_STEP_SOCKET,
  CAPA_STEP_REUSEADDR,
  CAPA_STEP_FREEBIND,
  CAPA_STEP_V6ONLY,
  CAPA_STEP_BINDTODEVICE,
  CAPA_STEP_MARK,
  CAPA_STEP_BIND
};

/* "socket", "setsockopt" or "bind" ("" for CAPA_STEP_NONE). */
const char *capa_pin_step_syscall(enum capa_pin_step step);

/* The socket option of a setsockopt step ("SO_MARK", ...), else NULL. */
const char *capa_pin_step_option(enum capa_pin_step step);

/* Address length in bytes of AF_INET (4) / AF_INET6 (16), or -EAFNOSUPPORT. */
int capa_addr_len(int family);

/*
 * Sets what a pinned socket needs before its address is known: SO_REUSEADDR,
 * IP_FREEBIND / IPV6_FREEBIND (so the address need not be configured yet),
 * then the optional SO_BINDTODEVICE / SO_MARK. `opts` may be NULL. Splitting
 * this from the bind lets a terminal prepare the socket while its CAPA query
 * is in flight.
 */
int capa_pin_prepare(int fd, int family, const struct capa_pin_opts *opts,
                     enum capa_pin_step *failed);

/*
 * Binds a prepared socket of `family` (AF_INET / AF_INET6) to (addr, port),
 * IPv6 with IPV6_V6ONLY unless the address is v4-mapped. `addr` holds
 * capa_addr_len(family) bytes in network order; `port` is in host order.
 */
int capa_pin_bind(int fd, int family, const uint8_t *addr, uint16_t port,
                  enum capa_pin_step *failed);

/*
 * Pins an existing socket `fd`: capa_pin_prepare, then capa_pin_bind. The fd
 * is left open on failure (it is the caller's). `failed` (may be NULL)
 * receives the step that failed.
 */
int capa_pin_fd(int fd, int family, const uint8_t *addr, uint16_t port,
                const struct capa_pin_opts *opts, enum capa_pin_step *failed);

/*
 * Creates a close-on-exec socket of `family` and `type` (SOCK_STREAM or
 * SOCK_DGRAM) and prepares it (capa_pin_prepare). On success stores the fd in
 * *fd_out; on failure closes it and leaves *fd_out untouched.
 */
int capa_pin_open(int family, int type, const struct capa_pin_opts *opts, int *fd_out,
                  enum capa_pin_step *failed);

/* capa_pin_open, then capa_pin_bind; on failure the fd is closed. */
int capa_pin_socket(int family, int type, const uint8_t *addr, uint16_t port,
                    const struct capa_pin_opts *opts, int *fd_out,
                    enum capa_pin_step *failed);

#ifdef __cplusplus
}
#endif

#endif
