/* Telling the supervisor about pinned sockets: see supervisor_link.h. */
#define _GNU_SOURCE
#include "supervisor_link.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int capa_supervisor_tell(const struct capa_config *cfg, int fd, const struct capa_supervisor_note *note) {
  struct sockaddr_un to = {.sun_family = AF_UNIX};
  size_t name_len = strlen(cfg->supervisor);
  if (name_len == 0) return 0;
  /* An abstract name: a NUL, then the name. */
  memcpy(to.sun_path + 1, cfg->supervisor, name_len);
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = (void *)note, .iov_len = sizeof *note};
  struct msghdr msg = {.msg_name = &to, .msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len),
                       .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  /* Once sent, the note is in the supervisor's queue: no answer to wait for. */
  int rc = sendmsg(s, &msg, 0) < 0 ? -errno : 0;
  close(s);
  return rc;
}
