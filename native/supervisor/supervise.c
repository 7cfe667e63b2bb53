/*
 * The seccomp user-notification supervisor of capa-run (supervise.h): it pins what the LD_PRELOAD
 * library cannot reach (statically linked programs: Go, busybox; children that drop LD_PRELOAD;
 * raw system calls). Where the dynamic linker loads the library too, the library judges the
 * calls it sees and makes them with the supervisor's token, which the filter lets by; each
 * socket it pins it also hands to the supervisor (supervisor_link.h), so that a call on it the
 * library did not see is known as pinned. Everything else the supervisor pins itself.
 *
 * The child sets no-new-privs, installs a filter that hands connect, bind and the sends that
 * carry a destination to this process (SECCOMP_RET_USER_NOTIF, inherited by the whole tree
 * across fork and exec, static or not), refuses io_uring and other ABIs, and execs the program.
 * For each notification the supervisor takes a copy of the target's socket (pidfd_getfd), runs
 * the library's own socket step on it (terminal.h: exemptions, the CAPA lookup by reverse name,
 * the pin, the refusals), and for a connect performs the connect itself on the inspected socket
 * and address (letting the call continue would leave a window in which another thread swaps the
 * descriptor). The watcher looks every 100 ms, while sockets are pinned, whether each is still
 * open (sock_diag): the allocation of one that is gone goes back; when the last process of the
 * tree is gone, whatever is still pinned is released. Fails closed: a socket or address it
 * cannot inspect fails the call with EPERM. If the supervisor dies, the tree's further
 * notified calls fail with ENOSYS: nothing goes out unpinned.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../preload/config.h"
#include "../preload/log.h"
#include "../preload/pins.h"
#include "../preload/supervisor_link.h"
#include "../core/socket_table.h"
#include "../preload/terminal.h"
#include "supervise.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* Linux 6.9 */
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS /* Linux 6.6 */
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif


/* The filter: x86-64 only (other ABIs and x32 get EPERM), io_uring refused (its submissions
 * would bypass every check), the calls the preload library has judged (the token in args[4]
 * and args[5], supervisor_link.h) allowed, connect/bind/sendmsg/sendmmsg and sendto with an
 * address to the supervisor; everything else allowed. A bind whose address is shorter than
 * sockaddr_in (a unix autobind: the kernel refuses it on an inet socket) passes too. Closes are
 * not notified (a program's start alone makes dozens, a notification each): the watcher sees
 * which pinned sockets are gone. */
#define ARG(i) offsetof(struct seccomp_data, args[i])
#define FILTER_LEN 30

static void make_filter(struct sock_filter f[FILTER_LEN], const uint64_t token[2]) {
  const struct sock_filter program[FILTER_LEN] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      /* 2 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      /* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* __X32_SYSCALL_BIT */, 0, 1),
      /* 5 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      /* 7 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      /* 8 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(4)), /* the token, a word at a time */
      /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)token[0], 0, 6),
      /* 10 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(4) + 4),
      /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(token[0] >> 32), 0, 4),
      /* 12 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(5)),
      /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)token[1], 0, 2),
      /* 14 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(5) + 4),
      /* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(token[1] >> 32), 12, 0),
      /* 16 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      /* 17 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bind, 0, 2),
      /* 18 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(2)), /* addrlen: an int, its low word */
      /* 19 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, sizeof(struct sockaddr_in), 9, 8),
      /* 20 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 8, 0),
      /* 21 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendmsg, 7, 0),
      /* 22 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendmmsg, 6, 0),
      /* 23 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendto, 0, 4),
      /* 24 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(4)),
      /* 25 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
      /* 26 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(4) + 4),
      /* 27 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
      /* 28 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      /* 29 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  memcpy(f, program, sizeof program);
}

static int listener = -1;

/* ---- the target's side ------------------------------------------------------------------ */

static int reply(uint64_t id, int error, int continue_call) {
  struct seccomp_notif_resp r = {.id = id, .error = error ? -error : 0,
                                 .flags = continue_call ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0};
  return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &r);
}

/* The call done here: its result (a count) or its errno. */
static int reply_result(uint64_t id, long result) {
  struct seccomp_notif_resp r = {.id = id, .val = result < 0 ? -1 : result, .error = result < 0 ? -errno : 0};
  return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &r);
}

static int still_valid(uint64_t id) { return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0; }

/* Our copy of the target thread's descriptor, or -errno. The notification names a thread:
 * pidfd_open of a thread that does not lead its group needs PIDFD_THREAD. */
static int target_fd(pid_t tid, int fd) {
  int pidfd = (int)syscall(SYS_pidfd_open, tid, 0);
  if (pidfd < 0 && errno == ENOENT) pidfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
  if (pidfd < 0) return -errno;
  int ours = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  return ours < 0 ? -err : ours;
}

/* Reads len octets at the target's address into buf: 0 or -errno. */
static int read_target(pid_t tid, uint64_t addr, void *buf, size_t len) {
  struct iovec local = {.iov_base = buf, .iov_len = len}, remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
  ssize_t n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
  if (n < 0) return -errno;
  return (size_t)n == len ? 0 : -EFAULT;
}

/* ---- sockets pinned in the tree, by socket identity (device, inode) ---------------------- */

struct pinned {
  dev_t dev;
  ino_t ino;
  struct capa_pin pin;
  int library; /* pinned by the preload library, which releases it itself */
};

static struct {
  pthread_mutex_t lock;
  int wake; /* an eventfd: the table has its first entry (the watcher sweeps while it has any) */
  struct pinned *items;
  size_t count, capacity;
} table = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = -1};

static int identity(int fd, struct stat *st) { return fstat(fd, st) == 0 && S_ISSOCK(st->st_mode); }

/* 1 with the entry in *out (taken out of the table when `take`), 0 when the socket is not pinned. */
static int find_pinned(const struct stat *st, struct pinned *out, int take) {
  int found = 0;
  pthread_mutex_lock(&table.lock);
  for (size_t i = 0; i < table.count && !found; i++) {
    if (table.items[i].dev != st->st_dev || table.items[i].ino != st->st_ino) continue;
    found = 1;
    if (out != NULL) *out = table.items[i];
    if (take) table.items[i] = table.items[--table.count];
  }
  pthread_mutex_unlock(&table.lock);
  return found;
}

static void add_pinned(const struct stat *st, const struct capa_pin *pin, int library) {
  pthread_mutex_lock(&table.lock);
  if (table.count == table.capacity) {
    size_t capacity = table.capacity ? table.capacity * 2 : 64;
    struct pinned *items = realloc(table.items, capacity * sizeof *items);
    if (items != NULL) table.items = items, table.capacity = capacity;
  }
  if (table.count < table.capacity) table.items[table.count++] = (struct pinned){st->st_dev, st->st_ino, *pin, library};
  if (table.count == 1) eventfd_write(table.wake, 1);
  pthread_mutex_unlock(&table.lock);
}

/* The library's notes (supervisor_link.h) waiting on its socket, into the table: how many. The
 * library sends its note before the call that uses the socket, so a socket it pinned is known
 * once the queue is read; the lock makes a thread that finds no entry wait for a note another
 * thread has taken but not yet recorded. */
static struct {
  pthread_mutex_t lock;
  int fd;
} notes = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static int hear_library(void) {
  int heard = 0;
  pthread_mutex_lock(&notes.lock);
  for (;;) {
    struct capa_supervisor_note note;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &note, .iov_len = sizeof note};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    ssize_t n = recvmsg(notes.fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) break;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fd = -1;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    struct stat st;
    if (fd >= 0 && n == (ssize_t)sizeof note && identity(fd, &st)) {
      struct capa_pin pin;
      memset(&pin, 0, sizeof pin);
      pin.alloc.record.family = note.family;
      memcpy(pin.alloc.record.addr, note.addr, sizeof note.addr);
      pin.alloc.record.port = note.port;
      pin.alloc.record.proto = note.proto;
      pin.dest.family = note.family;
      memcpy(pin.dest.addr, note.dest_addr, sizeof note.dest_addr);
      pin.dest_port = note.dest_port;
      add_pinned(&st, &pin, 1);
      heard++;
    }
    if (fd >= 0) close(fd);
  }
  pthread_mutex_unlock(&notes.lock);
  return heard;
}

/* Whether the socket is still bound to the pinned allocation (a closed socket's number, and
 * its inode, can be reused behind a close we did not see: close_range). */
static int bound_to(int fd, const struct capa_record *r) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return 0;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    return r->family == 4 && ntohs(a->sin_port) == r->port && memcmp(&a->sin_addr, r->addr, 4) == 0;
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
  const uint8_t *bytes = a->sin6_addr.s6_addr;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (ntohs(a->sin6_port) != r->port) return 0;
  if (r->family == 4) return memcmp(bytes, mapped, 12) == 0 && memcmp(bytes + 12, r->addr, 4) == 0;
  return memcmp(bytes, r->addr, 16) == 0;
}

/* The live pin of a socket into *out (1), or 0: an entry whose socket is no longer bound to it
 * is dropped. */
static int live_pin(int fd, const struct stat *st, struct pinned *out) {
  if (!find_pinned(st, out, 0) && !(hear_library() > 0 && find_pinned(st, out, 0))) return 0;
  if (bound_to(fd, &out->pin.alloc.record)) return 1;
  find_pinned(st, NULL, 1);
  return 0;
}

/* ---- the sweeper: pinned sockets that are gone ------------------------------------------ */

/* How often the watcher sweeps while sockets are pinned: a closed socket's allocation goes back
 * at most this much later. */
#define SWEEP_MS 100

/* Whether the kernel still has the pinned socket, held by some process (sock_diag by its
 * addresses and inode); a failed lookup counts as alive, to be asked again. */
static int still_open(const struct pinned *p) {
  const struct capa_record *r = &p->pin.alloc.record;
  struct capa_local_socket local = {.proto = r->proto, .family = r->family, .port = r->port};
  memcpy(local.addr, r->addr, sizeof local.addr);
  long inode = capa_socket_inode(r->proto == 17 ? 17 : 6, &local, p->pin.dest.addr, p->pin.dest_port);
  return inode < 0 || (ino_t)inode == p->ino;
}

/* One look: entries whose socket is gone leave the table; the supervisor's own go back. */
static void sweep(void) {
  pthread_mutex_lock(&table.lock);
  size_t n = table.count;
  struct pinned *seen = malloc((n > 0 ? n : 1) * sizeof *seen);
  if (seen != NULL) memcpy(seen, table.items, n * sizeof *seen);
  pthread_mutex_unlock(&table.lock);
  if (seen == NULL) return;
  for (size_t i = 0; i < n; i++) {
    struct stat st = {.st_dev = seen[i].dev, .st_ino = seen[i].ino};
    if (still_open(&seen[i]) || !find_pinned(&st, NULL, 1)) continue;
    if (!seen[i].library) capa_release_pin(&seen[i].pin, "closed");
  }
  free(seen);
}

/* Monotonic milliseconds. */
static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int pinned_count(void) {
  pthread_mutex_lock(&table.lock);
  int n = (int)table.count;
  pthread_mutex_unlock(&table.lock);
  return n;
}

/* ---- one notification --------------------------------------------------------------------- */

/* struct msghdr as the kernel reads it from the target: musl's own keeps only the low 32 bits
 * of the two lengths (POSIX types, padded to the kernel's size_t). */
struct target_msghdr {
  uint64_t name;
  uint32_t namelen, pad;
  uint64_t iov, iovlen, control, controllen;
  uint32_t flags, pad2;
};

struct target_mmsghdr {
  struct target_msghdr hdr;
  uint32_t len, pad;
};

/* The destination a connect or send names: the socket address (at most sockaddr_storage) the
 * call points at. 0, 1 when the call names none (continue it), or -errno. */
static int destination_of(const struct seccomp_notif *n, struct sockaddr_storage *ss, socklen_t *len) {
  uint64_t addr = 0, addrlen = 0;
  int rc;
  if (n->data.nr == __NR_connect || n->data.nr == __NR_bind) {
    addr = n->data.args[1], addrlen = n->data.args[2];
  } else if (n->data.nr == __NR_sendto) {
    addr = n->data.args[4], addrlen = n->data.args[5];
  } else {
    struct target_msghdr msg; /* sendmsg, or the first message of sendmmsg (struct mmsghdr starts with it) */
    if ((rc = read_target(n->pid, n->data.args[1], &msg, sizeof msg)) < 0) return rc;
    addr = msg.name, addrlen = msg.namelen;
  }
  if (addr == 0) return 1;
  if (addrlen > sizeof *ss) addrlen = sizeof *ss;
  memset(ss, 0, sizeof *ss);
  if ((rc = read_target(n->pid, addr, ss, (size_t)addrlen)) < 0) return rc;
  *len = (socklen_t)addrlen;
  return ss->ss_family == AF_INET || ss->ss_family == AF_INET6 ? 0 : 1;
}

/* Fails the call closed: its socket or destination could not be inspected. */
static void refuse(const struct capa_config *cfg, const struct seccomp_notif *n, int why) {
  capa_notice(cfg, "cannot inspect the socket of process %d (%s); refusing its call (EPERM): nothing goes out unpinned",
              (int)n->pid, strerror(why));
  reply(n->id, EPERM, 0);
}

/* A datagram is at most this long, in at most SEND_IOV pieces; a longer send, or a sendmsg with
 * control data (descriptors, options of the program's), continues in the target. */
#define SEND_MAX 65536
#define SEND_IOV 64

/* The data of the target's sendto or sendmsg into data: its length, -1 when the call is to
 * continue in the target, or -errno when its memory cannot be read. */
static long send_data(const struct seccomp_notif *n, unsigned char *data) {
  struct target_msghdr msg = {.iovlen = 1};
  struct iovec iov[SEND_IOV];
  size_t total = 0;
  int rc;
  if (n->data.nr == __NR_sendto) {
    iov[0] = (struct iovec){.iov_base = (void *)(uintptr_t)n->data.args[1], .iov_len = (size_t)n->data.args[2]};
  } else {
    if ((rc = read_target(n->pid, n->data.args[1], &msg, sizeof msg)) < 0) return rc;
    if (msg.controllen != 0 || msg.iovlen > SEND_IOV) return -1;
    if ((rc = read_target(n->pid, msg.iov, iov, msg.iovlen * sizeof iov[0])) < 0) return rc;
  }
  for (size_t i = 0; i < msg.iovlen; i++) {
    if (iov[i].iov_len > SEND_MAX - total) return -1;
    if (iov[i].iov_len > 0 && (rc = read_target(n->pid, (uintptr_t)iov[i].iov_base, data + total, iov[i].iov_len)) < 0) return rc;
    total += iov[i].iov_len;
  }
  return (long)total;
}

/* The target's sendto or sendmsg, performed on our copy of its socket with its data. */
static void send_here(const struct seccomp_notif *n, int fd, const struct sockaddr_storage *ss, socklen_t len) {
  static __thread unsigned char data[SEND_MAX];
  long size = send_data(n, data);
  int flags = (int)n->data.args[n->data.nr == __NR_sendto ? 3 : 2];
  if (size == -1) reply(n->id, 0, 1);
  else if (size < 0) refuse(capa_config(), n, (int)-size);
  else reply_result(n->id, (long)sendto(fd, data, (size_t)size, flags, (const struct sockaddr *)ss, len));
}

/* 0 when every destination of the call (each message of a sendmmsg) may use the pinned socket,
 * else -errno. */
static int admitted(const struct seccomp_notif *n, int fd, const struct capa_pin *pin, const struct sockaddr_storage *ss, socklen_t len) {
  int rc = capa_pin_admits(fd, pin, (const struct sockaddr *)ss, len);
  if (rc < 0 || n->data.nr != __NR_sendmmsg) return rc;
  unsigned count = (unsigned)n->data.args[2] < UIO_MAXIOV ? (unsigned)n->data.args[2] : UIO_MAXIOV;
  for (unsigned i = 1; i < count && rc == 0; i++) {
    struct target_mmsghdr m;
    struct sockaddr_storage to;
    if ((rc = read_target(n->pid, n->data.args[1] + i * sizeof m, &m, sizeof m)) < 0) break;
    if (m.hdr.name == 0) continue;
    socklen_t to_len = m.hdr.namelen < sizeof to ? m.hdr.namelen : sizeof to;
    memset(&to, 0, sizeof to);
    if ((rc = read_target(n->pid, m.hdr.name, &to, to_len)) == 0) rc = capa_pin_admits(fd, pin, (const struct sockaddr *)&to, to_len);
  }
  return rc;
}

/* A call past the first look: the notification, the destination it names, our copy of its socket. */
struct call {
  struct seccomp_notif n;
  struct sockaddr_storage to;
  socklen_t to_len;
  int fd;
  /* What inspect() found: whether fd is a socket (its identity in st), and its live pin. */
  int is_socket, pinned;
  struct stat st;
  struct pinned entry;
};

static void inspect(struct call *c) {
  c->is_socket = identity(c->fd, &c->st);
  c->pinned = c->is_socket && live_pin(c->fd, &c->st, &c->entry);
}

/* connect, bind and the sends, inspected: the library's socket step on our copy of the socket,
 * closed after. */
static void handle_socket_call(const struct call *c) {
  const struct seccomp_notif *n = &c->n;
  const struct sockaddr *to = (const struct sockaddr *)&c->to;
  int fd = c->fd, rc, pinned = c->pinned;
  struct capa_pin pin;
  int connecting = n->data.nr == __NR_connect;
  if (!c->is_socket) {
    reply(n->id, 0, 1);
  } else if (n->data.nr == __NR_bind) {
    /* A bind of the wildcard address and port 0 is deferred: the connect pins the socket. */
    if (capa_bind_deferred(fd, to, c->to_len)) reply(n->id, 0, 0);
    else reply(n->id, 0, 1);
  } else if (!pinned && (rc = connecting ? capa_before_connect(fd, to, c->to_len) : capa_before_send(fd, to, c->to_len)) < 0) {
    reply(n->id, -rc, 0);
  } else if (pinned && (rc = admitted(n, fd, &c->entry.pin, &c->to, c->to_len)) < 0) {
    reply(n->id, -rc, 0); /* another destination than the allocation's */
  } else {
    if (capa_take_pin(fd, &pin)) add_pinned(&c->st, &pin, 0), pinned = 1;
    /* A pinned socket connects (and sends, by sendto and sendmsg) here, on the socket and
     * address inspected, so another thread cannot swap the descriptor in between; the rest
     * (sendmmsg, a sendmsg with control data) go on. */
    if (connecting && pinned) reply(n->id, connect(fd, to, c->to_len) < 0 ? errno : 0, 0);
    else if (pinned && (n->data.nr == __NR_sendto || n->data.nr == __NR_sendmsg)) send_here(n, fd, &c->to, c->to_len);
    else reply(n->id, 0, 1);
  }
  close(fd);
}

/* Our copy of the call's socket into c->fd (0), or -1 when the call is answered (or its target
 * gone) already. */
static int take_socket(struct call *c) {
  int fd = target_fd(c->n.pid, (int)c->n.data.args[0]);
  if (fd >= 0 && still_valid(c->n.id)) {
    c->fd = fd;
    return 0;
  }
  if (fd == -EBADF) reply(c->n.id, EBADF, 0);
  else if (fd < 0) refuse(capa_config(), &c->n, -fd);
  else close(fd);
  return -1;
}

/* Whether the inspected call needs no worker: its socket is pinned already (no CAPA answer to
 * wait for) and non-blocking (the connect or send made here returns at once). */
static int answers_at_once(const struct call *c) {
  int flags = fcntl(c->fd, F_GETFL);
  return c->pinned && flags >= 0 && (flags & O_NONBLOCK);
}

/* A CAPA answer may be slow, and so may a blocking connect: such calls go to a pool of workers,
 * so that no call waits for another's. The pool grows, a thread at a time, when a call finds no
 * worker idle, to WORKERS (a program whose connects the library judges pays no thread); more
 * waiting calls queue. */
#define WORKERS 8

static struct {
  pthread_mutex_t lock;
  pthread_cond_t ready;
  struct call *items;
  size_t head, count, capacity;
  int workers, idle;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static void *worker(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&queue.lock);
    queue.idle++;
    while (queue.count == 0) pthread_cond_wait(&queue.ready, &queue.lock);
    queue.idle--;
    struct call c = queue.items[queue.head];
    queue.head = (queue.head + 1) % queue.capacity;
    queue.count--;
    pthread_mutex_unlock(&queue.lock);
    inspect(&c); /* again: another call may have pinned the socket while this one waited */
    handle_socket_call(&c);
  }
  return NULL;
}

/* One more worker, under queue.lock; 0, or -1 when none could start. */
static int add_worker(void) {
  pthread_t thread;
  if (queue.workers == WORKERS) return 0;
  if (pthread_create(&thread, NULL, worker, NULL) != 0) return queue.workers > 0 ? 0 : -1;
  pthread_detach(thread);
  queue.workers++;
  return 0;
}

/* 0, or -1 when the call cannot be queued (the caller handles it itself). */
static int enqueue(const struct call *c) {
  int rc = 0;
  pthread_mutex_lock(&queue.lock);
  if (queue.count == queue.capacity) {
    size_t capacity = queue.capacity ? queue.capacity * 2 : 64;
    struct call *items = malloc(capacity * sizeof *items);
    if (items == NULL) {
      rc = -1;
    } else {
      for (size_t i = 0; i < queue.count; i++) items[i] = queue.items[(queue.head + i) % queue.capacity];
      free(queue.items);
      queue.items = items, queue.head = 0, queue.capacity = capacity;
    }
  }
  if (rc == 0 && queue.idle <= (int)queue.count) rc = add_worker();
  if (rc == 0) {
    queue.items[(queue.head + queue.count) % queue.capacity] = *c;
    queue.count++;
    pthread_cond_signal(&queue.ready);
  }
  pthread_mutex_unlock(&queue.lock);
  return rc;
}

static int is_wildcard_any_port(const struct sockaddr_storage *ss) {
  static const uint8_t zero[16];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    return a->sin_port == 0 && a->sin_addr.s_addr == 0;
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
  return a->sin6_port == 0 && memcmp(&a->sin6_addr, zero, 16) == 0;
}

/* Binds, calls whose destination never needs CAPA and calls on pinned non-blocking sockets are
 * answered here at once; the rest go to the workers. */
static void dispatch(const struct seccomp_notif *n) {
  struct call c = {.n = *n, .fd = -1};
  int rc = destination_of(n, &c.to, &c.to_len);
  if (n->data.nr == __NR_bind) {
    /* Only a bind of the wildcard address and port 0 is ours (deferred); the rest go on. */
    if (rc != 0 || !is_wildcard_any_port(&c.to)) reply(n->id, 0, 1);
    else if (take_socket(&c) == 0) {
      inspect(&c);
      handle_socket_call(&c);
    }
  } else if (rc < 0) {
    refuse(capa_config(), n, -rc);
  } else if (rc == 1 || (c.to_len > 0 && capa_destination_needs_no_capa((const struct sockaddr *)&c.to, c.to_len))) {
    reply(n->id, 0, 1);
  } else if (take_socket(&c) == 0) {
    inspect(&c);
    if (answers_at_once(&c) || enqueue(&c) < 0) handle_socket_call(&c);
  }
}

/* ---- start and end ------------------------------------------------------------------------ */

static void release_all(void) {
  pthread_mutex_lock(&table.lock);
  for (size_t i = 0; i < table.count; i++) {
    if (!table.items[i].library) capa_release_pin(&table.items[i].pin, "exit");
  }
  table.count = 0;
  pthread_mutex_unlock(&table.lock);
}

/* In the child, which shares the supervisor's descriptor table until its exec (CLONE_FILES): so
 * the listener the filter makes is the supervisor's too, and the child only says its number
 * and goes on to exec (which unshares the table and closes the listener on the child's side).
 * No-new-privs, the filter, the number, exec. Never returns. */
static void run_child(const char *path, char *const argv[], const sigset_t *mask, const char *link, const uint64_t token[2],
                      int ready) {
  struct sock_filter filter[FILTER_LEN];
  struct sock_fprog prog = {.len = FILTER_LEN, .filter = filter};
  char token_text[33];
  make_filter(filter, token);
  snprintf(token_text, sizeof token_text, "%016llx%016llx", (unsigned long long)token[0], (unsigned long long)token[1]);
  sigprocmask(SIG_SETMASK, mask, NULL);
  int fd = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -1 : (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                        SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
  if (write(ready, &fd, sizeof fd) != (ssize_t)sizeof fd || fd < 0) _exit(CAPA_EXIT_FAILED);
  /* The library for the program, which the supervisor itself must not load (capa-run passes it
   * as CAPA_PRELOAD, not LD_PRELOAD). */
  /* Only the tree is told where the supervisor listens: the supervisor's own socket step must
   * not take itself for a library. */
  setenv("CAPA_SUPERVISOR", link, 1);
  setenv("CAPA_SUPERVISOR_TOKEN", token_text, 1);
  const char *preload = getenv("CAPA_PRELOAD");
  if (preload != NULL) {
    setenv("LD_PRELOAD", preload, 1);
    unsetenv("CAPA_PRELOAD");
  }
  execv(path, argv);
  int err = errno;
  fprintf(stderr, "capa-run: %s: %s\n", argv[0], strerror(err));
  _exit(err == ENOENT ? CAPA_EXIT_NOT_FOUND : CAPA_EXIT_REFUSED);
}

static int status_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : CAPA_EXIT_FAILED;
}

/* The abstract socket the library talks to, its name (CAPA_SUPERVISOR of the tree) into name;
 * -1 on failure. */
static int open_library_link(char *name, size_t len) {
  struct sockaddr_un at = {.sun_family = AF_UNIX};
  int n = snprintf(name, len, "capa-supervise-%ld", (long)getpid());
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memcpy(at.sun_path + 1, name, (size_t)n);
  if (s >= 0 && bind(s, (struct sockaddr *)&at, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) < 0) {
    close(s);
    return -1;
  }
  return s;
}

struct watch {
  pid_t child;
  int sigfd;
};

/* Reaps the tree (a subreaper: its orphans are ours, so their filter references end), hears the
 * library, passes capa-run's signals on to the program, and ends the supervisor when no process
 * of the tree is left: what is still pinned goes back, the program's status becomes ours. */
static void *watch_tree(void *arg) {
  const struct watch *w = arg;
  int status = -1;
  long long due = -1; /* when the next sweep is due; -1 while nothing is pinned */
  for (;;) {
    /* No events asked of the listener: only its hang-up (no process of the tree left) wakes us. */
    struct pollfd p[4] = {{.fd = listener, .events = 0}, {.fd = w->sigfd, .events = POLLIN},
                          {.fd = notes.fd, .events = POLLIN}, {.fd = table.wake, .events = POLLIN}};
    long long left = due < 0 ? -1 : due - now_ms();
    if (poll(p, 4, due < 0 ? -1 : left > 0 ? (int)left : 0) < 0 && errno != EINTR) break;
    if (p[2].revents & POLLIN) hear_library();
    eventfd_t first;
    if ((p[3].revents & POLLIN) && eventfd_read(table.wake, &first) == 0 && due < 0) due = now_ms() + SWEEP_MS;
    if (due >= 0 && now_ms() >= due) {
      sweep();
      due = pinned_count() > 0 ? now_ms() + SWEEP_MS : -1;
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo info;
      if (read(w->sigfd, &info, sizeof info) == (ssize_t)sizeof info && info.ssi_signo != SIGCHLD) {
        kill(w->child, (int)info.ssi_signo); /* capa-run's signals are the program's */
      }
      int s;
      pid_t pid;
      while ((pid = waitpid(-1, &s, WNOHANG)) > 0) {
        if (pid == w->child) status = s;
      }
    }
    if (p[0].revents & (POLLHUP | POLLERR)) {
      /* No process of the tree is left: every one has exited and is ours to reap (a subreaper),
       * whether or not its SIGCHLD was read yet. */
      int s;
      pid_t pid;
      while ((pid = waitpid(-1, &s, 0)) > 0 || (pid < 0 && errno == EINTR)) {
        if (pid == w->child) status = s;
      }
      break;
    }
  }
  release_all();
  _exit(status == -1 ? CAPA_EXIT_FAILED : status_code(status));
}

/* Whether the listener hung up: no process of the tree is left. */
static int tree_gone(void) {
  struct pollfd p = {.fd = listener, .events = 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* Learns the listener's number from the child (the descriptor is already ours: one table), then
 * answers the tree's calls until watch_tree ends the process. The main thread waits in the
 * receive itself: with SYNC_WAKE_UP the target and this thread then switch on one CPU. */
static int serve(const struct watch *tree, const int ready[2]) {
  pthread_t watcher;
  /* The pipe's write end is ours too: a child killed before it writes shows as its pidfd. */
  int pidfd = (int)syscall(SYS_pidfd_open, tree->child, 0);
  struct pollfd p[2] = {{.fd = ready[0], .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
  while (pidfd >= 0 && poll(p, 2, -1) < 0 && errno == EINTR) continue;
  int got = pidfd >= 0 && (p[0].revents & POLLIN) && read(ready[0], &listener, sizeof listener) == (ssize_t)sizeof listener;
  close(pidfd);
  close(ready[0]);
  close(ready[1]);
  if (!got || listener < 0) return CAPA_EXIT_FAILED;
  /* Target and supervisor switch on one CPU (Linux 6.6+): a wake-up across CPUs costs this VM
   * about 4x the whole notification. Without it the notifications still work, slower. */
  ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP); /* the flags by value */
  if (pthread_create(&watcher, NULL, watch_tree, (void *)tree) != 0) return CAPA_EXIT_FAILED;
  for (;;) {
    struct seccomp_notif n;
    memset(&n, 0, sizeof n);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &n) == 0) dispatch(&n);
    else if (errno != EINTR && (errno != ENOENT || tree_gone())) break; /* ENOENT: a target died mid-call */
  }
  pthread_join(watcher, NULL);
  return CAPA_EXIT_FAILED;
}

int capa_supervise(const char *path, char *const argv[], const sigset_t *program_mask) {
  static const int handled[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  static struct watch tree;
  int ready[2];
  uint64_t token[2];
  sigset_t mask;
  program_invocation_short_name = basename((char *)argv[0]);
  sigemptyset(&mask);
  for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) sigaddset(&mask, handled[i]);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  tree.sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
  char link[64];
  notes.fd = open_library_link(link, sizeof link);
  table.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (tree.sigfd < 0 || notes.fd < 0 || table.wake < 0 || getrandom(token, sizeof token, 0) != (ssize_t)sizeof token || pipe2(ready, O_CLOEXEC) < 0 ||
      prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
    perror("capa-run: supervisor");
    return CAPA_EXIT_FAILED;
  }
  /* fork(), but sharing the descriptor table: the supervisor is single-threaded here. */
  tree.child = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, NULL, NULL, NULL, 0);
  if (tree.child < 0) {
    perror("capa-run: supervisor: fork");
    return CAPA_EXIT_FAILED;
  }
  if (tree.child == 0) run_child(path, argv, program_mask, link, token, ready[1]);
  return serve(&tree, ready);
}
