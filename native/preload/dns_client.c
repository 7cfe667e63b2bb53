/* DNS transport over UDP and TCP: see dns_client.h. */
#define _GNU_SOURCE
#include "dns_client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UDP_REPLY_MAX 4096
#define TCP_REPLY_MAX 65535
#define HEADER 12
#define QR_BIT 0x80 /* in the third header octet */
#define TC_BIT 0x02 /* in the third header octet */
#define QUERY_MAX 512

enum { UDP_TRUNCATED = -1 };

int64_t capa_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint16_t capa_dns_random_id(void) {
  uint16_t id = 0;
  while (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id && errno == EINTR) {
  }
  return id;
}

/* Waits for `events` on fd until until_ms: 0 ready, -ETIMEDOUT, or -errno. */
static int wait_for(int fd, short events, int64_t until_ms) {
  for (;;) {
    int64_t left = until_ms - capa_now_ms();
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = events};
    int rc = poll(&p, 1, (int)left);
    if (rc > 0) return 0;
    if (rc < 0 && errno != EINTR) return -errno;
  }
}

static int open_socket(const struct capa_server *server, int type) {
  struct sockaddr_storage ss;
  socklen_t len = capa_sockaddr(&server->ip, server->port, &ss);
  int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

/* A reply with our ID, QR and TC set: judged on its header alone (it may be cut anywhere; a
 * spoofed TC only costs the TCP retry, where spoofing is much harder). */
static int is_truncated_reply(const uint8_t *msg, size_t len, uint16_t id) {
  return len >= HEADER && ((msg[0] << 8) | msg[1]) == id && (msg[2] & QR_BIT) && (msg[2] & TC_BIT);
}

static int fail(struct capa_exchange *ex, int neg_errno) {
  if (neg_errno == -ETIMEDOUT) return CAPA_DNS_TIMEOUT;
  ex->error = -neg_errno;
  return CAPA_DNS_UNREACHABLE;
}

/* Datagrams until one is accepted, or a truncated reply (UDP_TRUNCATED), or time runs out. */
static int udp_wait(struct capa_exchange *ex, int fd) {
  uint8_t buf[UDP_REPLY_MAX];
  int saw_malformed = 0;
  for (;;) {
    int rc = wait_for(fd, POLLIN, ex->until_ms);
    if (rc == -ETIMEDOUT) return saw_malformed ? CAPA_DNS_MALFORMED : CAPA_DNS_TIMEOUT;
    if (rc < 0) return fail(ex, rc);
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(ex, -errno);
    }
    if (is_truncated_reply(buf, (size_t)n, ex->id)) return UDP_TRUNCATED;
    int verdict = ex->match(buf, (size_t)n, ex->ctx);
    if (verdict > 0) return CAPA_DNS_OK;
    saw_malformed |= verdict < 0;
  }
}

static int udp_try(struct capa_exchange *ex) {
  int fd = open_socket(ex->server, SOCK_DGRAM);
  if (fd < 0) return fail(ex, fd);
  int rc = send(fd, ex->query, ex->query_len, 0) < 0 ? fail(ex, -errno) : udp_wait(ex, fd);
  close(fd);
  return rc;
}

/* Reads or writes exactly n octets before until_ms: 0, -ETIMEDOUT, -ECONNRESET on EOF, -errno. */
static int tcp_io(int fd, uint8_t *buf, size_t n, int64_t until_ms, int writing) {
  size_t done = 0;
  while (done < n) {
    int rc = wait_for(fd, writing ? POLLOUT : POLLIN, until_ms);
    if (rc < 0) return rc;
    ssize_t k = writing ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
    if (k == 0) return -ECONNRESET;
    if (k < 0 && errno != EAGAIN && errno != EINTR) return -errno;
    if (k > 0) done += (size_t)k;
  }
  return 0;
}

static int tcp_connected(int fd, int64_t until_ms) {
  int err = 0;
  socklen_t len = sizeof err;
  int rc = wait_for(fd, POLLOUT, until_ms);
  if (rc < 0) return rc;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
  return -err;
}

/* RFC 7766 §8: each message is preceded by its 2-octet length. */
static int tcp_talk(struct capa_exchange *ex, int fd, uint8_t *reply) {
  uint8_t framed[2 + QUERY_MAX], len2[2];
  int saw_malformed = 0;
  if (ex->query_len > QUERY_MAX) return fail(ex, -EMSGSIZE);
  framed[0] = (uint8_t)(ex->query_len >> 8);
  framed[1] = (uint8_t)ex->query_len;
  memcpy(framed + 2, ex->query, ex->query_len);
  int rc = tcp_connected(fd, ex->until_ms);
  if (rc == 0) rc = tcp_io(fd, framed, ex->query_len + 2, ex->until_ms, 1);
  while (rc == 0) {
    rc = tcp_io(fd, len2, 2, ex->until_ms, 0);
    size_t n = ((size_t)len2[0] << 8) | len2[1];
    if (rc == 0) rc = tcp_io(fd, reply, n, ex->until_ms, 0);
    if (rc < 0) break;
    int verdict = ex->match(reply, n, ex->ctx);
    if (verdict > 0) return CAPA_DNS_OK;
    saw_malformed |= verdict < 0;
  }
  if (rc == -ETIMEDOUT && saw_malformed) return CAPA_DNS_MALFORMED;
  return fail(ex, rc);
}

static int tcp_try(struct capa_exchange *ex) {
  uint8_t *reply = malloc(TCP_REPLY_MAX);
  if (reply == NULL) return fail(ex, -ENOMEM);
  int fd = open_socket(ex->server, SOCK_STREAM);
  int rc = fd < 0 ? fail(ex, fd) : tcp_talk(ex, fd, reply);
  if (fd >= 0) close(fd);
  free(reply);
  ex->tcp = 1;
  return rc;
}

enum capa_dns_status capa_dns_exchange_udp(struct capa_exchange *ex) {
  int rc = udp_try(ex);
  return rc == UDP_TRUNCATED ? CAPA_DNS_TIMEOUT : (enum capa_dns_status)rc;
}

enum capa_dns_status capa_dns_exchange(struct capa_exchange *ex) {
  int rc = udp_try(ex);
  return (enum capa_dns_status)(rc == UDP_TRUNCATED ? tcp_try(ex) : rc);
}

struct query_match {
  uint16_t rrtype, id, qtype, port;
  int proto;
  const char *qname;
  struct capa_dns_answer *out;
};

/* 1 accept, 0 not ours, -1 malformed: for CAPA by the outcome table, else by capa_response_parse. */
static int recognise(const uint8_t *msg, size_t len, struct query_match *q) {
  struct capa_response *r = &q->out->response;
  if (q->qtype == q->rrtype) {
    struct capa_judgement *j = &q->out->judgement;
    capa_judge_reply(msg, len, q->rrtype, q->id, q->qname, q->port, q->proto, r, j);
    /* TC=1 reached here only over TCP, where it breaks the rules. */
    return j->verdict == CAPA_VERDICT_IGNORE ? 0 : j->verdict == CAPA_VERDICT_MALFORMED || j->verdict == CAPA_VERDICT_TCP ? -1 : 1;
  }
  int rc = capa_response_parse(msg, len, q->rrtype, q->id, q->qname, q->qtype, r);
  return rc == CAPA_OK ? 1 : rc == CAPA_EMISMATCH ? 0 : -1;
}

static int match_query(const uint8_t *msg, size_t len, void *ctx) {
  struct query_match *q = ctx;
  struct capa_response *r = &q->out->response;
  int rc = recognise(msg, len, q);
  if (rc <= 0) return rc;
  int is_address_query = q->qtype == CAPA_TYPE_A || q->qtype == CAPA_TYPE_AAAA;
  q->out->answer_count = is_address_query ? capa_answer_addresses(msg, len, q->rrtype, q->qname, q->qtype, q->out->answers) : 0;
  if (q->out->answer_count < 0) return -1;
  size_t n = r->ede >= 0 ? r->ede_text_len : 0;
  if (n >= sizeof q->out->ede_text) n = sizeof q->out->ede_text - 1;
  memcpy(q->out->ede_text, msg + r->ede_text_off, n);
  q->out->ede_text[n] = '\0';
  return 1;
}

enum capa_dns_status capa_dns_query(const struct capa_server *server, const struct capa_question *question,
                                    int64_t until_ms, struct capa_dns_answer *out, int *error) {
  uint8_t query[QUERY_MAX];
  size_t len;
  const char *qname = question->qname;
  uint16_t qtype = question->qtype;
  int rd = question->rd;
  struct query_match q = {.rrtype = question->rrtype, .id = capa_dns_random_id(), .qtype = qtype, .port = question->port,
                          .proto = question->proto, .qname = qname, .out = out};
  if (capa_query_encode(q.id, qname, qtype, rd, 1, query, sizeof query, &len) != CAPA_OK) {
    *error = EINVAL;
    return CAPA_DNS_UNREACHABLE;
  }
  struct capa_exchange ex = {.server = server, .query = query, .query_len = len, .id = q.id,
                             .until_ms = until_ms, .match = match_query, .ctx = &q};
  enum capa_dns_status status = capa_dns_exchange(&ex);
  out->tcp = ex.tcp;
  *error = ex.error;
  return status;
}
