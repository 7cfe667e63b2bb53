/* nf_tables set elements in bulk through nfnetlink: see nft_set.h. */
#define _GNU_SOURCE
#include "nft_set.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* One transaction's bytes: well under the default socket send buffer (208 KiB). */
#define TXN_BYTES (128 * 1024)
/* One message's element list: its nested attribute length is 16 bits. */
#define LIST_BYTES 60000
#define RECV_BYTES (64 * 1024)
#define ACK_TIMEOUT_S 10
#define MAX_KEY_LEN 64

size_t capa_nft_record_len(const struct capa_nft_set *set) {
  return set->key_len + (set->is_map ? 4u : 0u);
}

static int valid_set(const struct capa_nft_set *set) {
  return set->table != NULL && set->name != NULL && set->key_len > 0 && set->key_len <= MAX_KEY_LEN &&
         set->key_len % 4 == 0 && strlen(set->table) < 256 && strlen(set->name) < 256;
}

/* ---- the socket ---- */

static int open_here(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return -errno;
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  int one = 1;
  struct timeval timeout = {.tv_sec = ACK_TIMEOUT_S};
  /* Error acks without the request echoed (ours are up to 60 KB each). */
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0 ||
      setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

int capa_nft_open(const char *netns_path) {
  if (netns_path == NULL) return open_here();
  int back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (back < 0) return -errno;
  int target = open(netns_path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(back);
    return -err;
  }
  /* The socket belongs to the namespace it is made in; only this thread moves, and returns at once. */
  int moved = setns(target, CLONE_NEWNET) == 0;
  int fd = moved ? open_here() : -errno;
  if (moved && setns(back, CLONE_NEWNET) < 0) abort(); /* this thread would stay in the wrong namespace */
  close(target);
  close(back);
  return fd;
}

/* ---- writing messages ---- */

struct writer {
  uint8_t buf[TXN_BYTES];
  size_t len;
  uint32_t seq;
};

static void *put(struct writer *w, size_t len) {
  void *at = w->buf + w->len;
  memset(at, 0, NLMSG_ALIGN(len));
  w->len += NLMSG_ALIGN(len);
  return at;
}

/* Starts a message; returns its offset (nlmsg_len is set by end_message). */
static size_t begin_message(struct writer *w, uint16_t type, uint16_t flags, uint8_t family,
                            uint16_t res_id) {
  size_t at = w->len;
  struct nlmsghdr *nh = put(w, NLMSG_HDRLEN);
  nh->nlmsg_type = type;
  nh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
  nh->nlmsg_seq = ++w->seq;
  struct nfgenmsg *gen = put(w, sizeof *gen);
  gen->nfgen_family = family;
  gen->version = NFNETLINK_V0;
  gen->res_id = res_id;
  return at;
}

static void end_message(struct writer *w, size_t at) {
  ((struct nlmsghdr *)(w->buf + at))->nlmsg_len = (uint32_t)(w->len - at);
}

static void put_attr(struct writer *w, uint16_t type, const void *data, size_t len) {
  struct nlattr *a = put(w, NLA_HDRLEN + len);
  a->nla_type = type;
  a->nla_len = (uint16_t)(NLA_HDRLEN + len);
  memcpy((uint8_t *)a + NLA_HDRLEN, data, len);
}

static size_t begin_nest(struct writer *w, uint16_t type) {
  size_t at = w->len;
  struct nlattr *a = put(w, NLA_HDRLEN);
  a->nla_type = (uint16_t)(type | NLA_F_NESTED);
  return at;
}

static void end_nest(struct writer *w, size_t at) {
  ((struct nlattr *)(w->buf + at))->nla_len = (uint16_t)(w->len - at);
}

static size_t element_bytes(const struct capa_nft_set *set, enum capa_nft_op op) {
  size_t key = NLA_HDRLEN + NLA_HDRLEN + NLA_ALIGN(set->key_len);
  size_t data = op == CAPA_NFT_ADD && set->is_map ? NLA_HDRLEN + NLA_HDRLEN + 4 : 0;
  return NLA_HDRLEN + key + data;
}

static void put_element(struct writer *w, const struct capa_nft_set *set, enum capa_nft_op op,
                        const uint8_t *record) {
  size_t elem = begin_nest(w, NFTA_LIST_ELEM);
  size_t key = begin_nest(w, NFTA_SET_ELEM_KEY);
  put_attr(w, NFTA_DATA_VALUE, record, set->key_len);
  end_nest(w, key);
  if (op == CAPA_NFT_ADD && set->is_map) {
    size_t data = begin_nest(w, NFTA_SET_ELEM_DATA);
    put_attr(w, NFTA_DATA_VALUE, record + set->key_len, 4);
    end_nest(w, data);
  }
  end_nest(w, elem);
}

static size_t message_head_bytes(const struct capa_nft_set *set) {
  return NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg)) + NLA_HDRLEN + NLA_ALIGN(strlen(set->table) + 1) +
         NLA_HDRLEN + NLA_ALIGN(strlen(set->name) + 1) + NLA_HDRLEN;
}

/* Fills one transaction from records[*next..count); returns the number of element messages in it.
 * The writer's sequence numbers run on across transactions. */
static int fill_transaction(struct writer *w, const struct capa_nft_set *set, enum capa_nft_op op,
                            const uint8_t *records, size_t count, size_t *next) {
  const size_t record_len = capa_nft_record_len(set), one = element_bytes(set, op);
  const size_t head = message_head_bytes(set), tail = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const uint16_t type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | (op == CAPA_NFT_ADD ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM));
  int messages = 0;
  w->len = 0;
  end_message(w, begin_message(w, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, htons(NFNL_SUBSYS_NFTABLES)));
  while (*next < count && w->len + head + one + tail <= TXN_BYTES) {
    size_t msg = begin_message(w, type, (uint16_t)(NLM_F_ACK | (op == CAPA_NFT_ADD ? NLM_F_CREATE : 0)), NFPROTO_INET, 0);
    put_attr(w, NFTA_SET_ELEM_LIST_TABLE, set->table, strlen(set->table) + 1);
    put_attr(w, NFTA_SET_ELEM_LIST_SET, set->name, strlen(set->name) + 1);
    size_t list = begin_nest(w, NFTA_SET_ELEM_LIST_ELEMENTS);
    while (*next < count && w->len - list + one <= LIST_BYTES && w->len + one + tail <= TXN_BYTES) {
      put_element(w, set, op, records + *next * record_len);
      (*next)++;
    }
    end_nest(w, list);
    end_message(w, msg);
    messages++;
  }
  end_message(w, begin_message(w, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, htons(NFNL_SUBSYS_NFTABLES)));
  return messages;
}

/* ---- talking ---- */

static int send_all(int fd, const void *buf, size_t len) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n = sendto(fd, buf, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  if (n < 0) return -errno;
  return (size_t)n == len ? 0 : -EMSGSIZE;
}

static int error_of(const struct nlmsghdr *nh) {
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -EPROTO;
  return ((const struct nlmsgerr *)NLMSG_DATA(nh))->error;
}

/* Reads `expected` acks into buf (RECV_BYTES); returns the first error among them, or 0. */
static int read_acks(int fd, uint8_t *buf, int expected) {
  int first = 0;
  while (expected > 0) {
    ssize_t n = recv(fd, buf, RECV_BYTES, 0);
    if (n < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    int len = (int)n;
    for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_type != NLMSG_ERROR) continue;
      int err = error_of(nh);
      if (err != 0 && first == 0) first = err;
      expected--;
    }
  }
  return first;
}

struct applier {
  int fd;
  const struct capa_nft_set *set;
  enum capa_nft_op op;
  const uint8_t *records;
  int skip_conflicts;
  struct writer *w;
  uint8_t *acks;
  struct capa_nft_apply_result *out;
};

static int is_conflict(int rc) { return rc == -EEXIST || rc == -EBUSY || rc == -ENOENT; }

/* Applies records[from..to) in transactions; a transaction refused for a conflict is halved until
 * the conflicting records stand alone, and those are skipped (when the applier says so). */
static int apply_range(struct applier *a, size_t from, size_t to) {
  size_t next = from;
  while (next < to) {
    size_t first = next;
    int messages = fill_transaction(a->w, a->set, a->op, a->records, to, &next);
    int rc = send_all(a->fd, a->w->buf, a->w->len);
    if (rc == 0) rc = read_acks(a->fd, a->acks, messages);
    if (rc == 0) {
      a->out->applied += next - first;
      continue;
    }
    if (!a->skip_conflicts || !is_conflict(rc)) return rc;
    if (next - first == 1) {
      a->out->conflicts++;
      continue;
    }
    size_t mid = first + (next - first) / 2;
    if ((rc = apply_range(a, first, mid)) < 0 || (rc = apply_range(a, mid, next)) < 0) return rc;
  }
  return 0;
}

int capa_nft_apply(int fd, const struct capa_nft_set *set, enum capa_nft_op op, const uint8_t *records,
                   size_t count, int skip_conflicts, struct capa_nft_apply_result *out) {
  if (!valid_set(set)) return -EINVAL;
  struct capa_nft_apply_result result = {0};
  struct applier a = {fd, set, op, records, skip_conflicts, malloc(sizeof(struct writer)), malloc(RECV_BYTES), &result};
  int rc = a.w == NULL || a.acks == NULL ? -ENOMEM : 0;
  if (rc == 0) {
    a.w->seq = 0;
    rc = apply_range(&a, 0, count);
  }
  free(a.w);
  free(a.acks);
  if (out != NULL) *out = result;
  return rc;
}

/* ---- reading back ---- */

struct records {
  uint8_t *data;
  size_t count, cap;
  size_t record_len;
};

static int push_record(struct records *r, const uint8_t *key, const uint8_t *data) {
  if (r->count == r->cap) {
    size_t cap = r->cap == 0 ? 4096 : r->cap * 2;
    uint8_t *grown = realloc(r->data, cap * r->record_len);
    if (grown == NULL) return -ENOMEM;
    r->data = grown;
    r->cap = cap;
  }
  uint8_t *at = r->data + r->count * r->record_len;
  memcpy(at, key, r->record_len - (data != NULL ? 4 : 0));
  if (data != NULL) memcpy(at + r->record_len - 4, data, 4);
  r->count++;
  return 0;
}

/* The NFTA_DATA_VALUE inside a nested nft_data attribute, or NULL. */
static const struct nlattr *data_value(const struct nlattr *nest) {
  const uint8_t *p = (const uint8_t *)nest + NLA_HDRLEN, *end = (const uint8_t *)nest + nest->nla_len;
  while (p + NLA_HDRLEN <= end) {
    const struct nlattr *a = (const struct nlattr *)p;
    if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) return NULL;
    if ((a->nla_type & NLA_TYPE_MASK) == NFTA_DATA_VALUE) return a;
    p += NLA_ALIGN(a->nla_len);
  }
  return NULL;
}

static int read_element(const struct nlattr *elem, const struct capa_nft_set *set, struct records *out) {
  const uint8_t *p = (const uint8_t *)elem + NLA_HDRLEN, *end = (const uint8_t *)elem + elem->nla_len;
  const struct nlattr *key = NULL, *data = NULL;
  while (p + NLA_HDRLEN <= end) {
    const struct nlattr *a = (const struct nlattr *)p;
    if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) return -EPROTO;
    uint16_t type = a->nla_type & NLA_TYPE_MASK;
    if (type == NFTA_SET_ELEM_KEY) key = data_value(a);
    if (type == NFTA_SET_ELEM_DATA) data = data_value(a);
    p += NLA_ALIGN(a->nla_len);
  }
  if (key == NULL || key->nla_len != NLA_HDRLEN + set->key_len) return -EPROTO;
  if (set->is_map && (data == NULL || data->nla_len != NLA_HDRLEN + 4)) return -EPROTO;
  return push_record(out, (const uint8_t *)key + NLA_HDRLEN, set->is_map ? (const uint8_t *)data + NLA_HDRLEN : NULL);
}

static int read_elements(const struct nlmsghdr *nh, const struct capa_nft_set *set, struct records *out) {
  size_t offset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const uint8_t *p = (const uint8_t *)nh + offset, *end = (const uint8_t *)nh + nh->nlmsg_len;
  while (p + NLA_HDRLEN <= end) {
    const struct nlattr *a = (const struct nlattr *)p;
    if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) return -EPROTO;
    if ((a->nla_type & NLA_TYPE_MASK) == NFTA_SET_ELEM_LIST_ELEMENTS) {
      const uint8_t *q = p + NLA_HDRLEN, *list_end = p + a->nla_len;
      while (q + NLA_HDRLEN <= list_end) {
        const struct nlattr *elem = (const struct nlattr *)q;
        if (elem->nla_len < NLA_HDRLEN || q + elem->nla_len > list_end) return -EPROTO;
        int rc = read_element(elem, set, out);
        if (rc < 0) return rc;
        q += NLA_ALIGN(elem->nla_len);
      }
    }
    p += NLA_ALIGN(a->nla_len);
  }
  return 0;
}

typedef int (*reply_fn)(const struct nlmsghdr *nh, void *ctx);

/* Sends the request in w, then reads replies into buf (RECV_BYTES) until NLMSG_DONE or
 * NLMSG_ERROR (an ack, or the failure returned); every other message goes to on_reply. */
static int talk(int fd, const struct writer *w, uint8_t *buf, reply_fn on_reply, void *ctx) {
  int rc = send_all(fd, w->buf, w->len);
  for (int finished = 0; rc == 0 && !finished;) {
    ssize_t n = recv(fd, buf, RECV_BYTES, 0);
    if (n < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    int len = (int)n;
    for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; rc == 0 && NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_type == NLMSG_DONE) finished = 1;
      else if (nh->nlmsg_type == NLMSG_ERROR) rc = error_of(nh), finished = 1;
      else rc = on_reply(nh, ctx);
    }
  }
  return rc;
}

struct dump_ctx {
  const struct capa_nft_set *set;
  struct records out;
};

static int on_elements(const struct nlmsghdr *nh, void *ctx) {
  struct dump_ctx *d = ctx;
  return read_elements(nh, d->set, &d->out);
}

int capa_nft_dump(int fd, const struct capa_nft_set *set, uint8_t **records, size_t *count) {
  if (!valid_set(set)) return -EINVAL;
  struct writer *w = malloc(sizeof *w);
  uint8_t *buf = malloc(RECV_BYTES);
  struct dump_ctx d = {set, {.record_len = capa_nft_record_len(set)}};
  int rc = w == NULL || buf == NULL ? -ENOMEM : 0;
  if (rc == 0) {
    w->len = 0;
    w->seq = 0;
    size_t msg = begin_message(w, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, NLM_F_DUMP, NFPROTO_INET, 0);
    put_attr(w, NFTA_SET_ELEM_LIST_TABLE, set->table, strlen(set->table) + 1);
    put_attr(w, NFTA_SET_ELEM_LIST_SET, set->name, strlen(set->name) + 1);
    end_message(w, msg);
    rc = talk(fd, w, buf, on_elements, &d);
  }
  free(w);
  free(buf);
  if (rc < 0) {
    free(d.out.data);
    return rc;
  }
  *records = d.out.data;
  *count = d.out.count;
  return 0;
}

/* ---- a table's comment ---- */

/* nftables keeps a table's comment in its user data: TLVs of u8 type, u8 length, value (libnftnl). */
#define UDATA_TABLE_COMMENT 0

static int comment_of(const struct nlattr *udata, char *out, size_t cap) {
  const uint8_t *p = (const uint8_t *)udata + NLA_HDRLEN, *end = (const uint8_t *)udata + udata->nla_len;
  while (p + 2 <= end && p + 2 + p[1] <= end) {
    if (p[0] == UDATA_TABLE_COMMENT) {
      size_t len = strnlen((const char *)p + 2, p[1]);
      if (len + 1 > cap) return -ENOBUFS;
      memcpy(out, p + 2, len);
      out[len] = '\0';
      return 0;
    }
    p += 2 + p[1];
  }
  return -ENODATA;
}

static int table_comment_in(const struct nlmsghdr *nh, char *out, size_t cap) {
  size_t offset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const uint8_t *p = (const uint8_t *)nh + offset, *end = (const uint8_t *)nh + nh->nlmsg_len;
  while (p + NLA_HDRLEN <= end) {
    const struct nlattr *a = (const struct nlattr *)p;
    if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) return -EPROTO;
    if ((a->nla_type & NLA_TYPE_MASK) == NFTA_TABLE_USERDATA) return comment_of(a, out, cap);
    p += NLA_ALIGN(a->nla_len);
  }
  return -ENODATA;
}

struct comment_ctx {
  char *out;
  size_t cap;
  int found;
};

static int on_table(const struct nlmsghdr *nh, void *ctx) {
  struct comment_ctx *c = ctx;
  c->found = table_comment_in(nh, c->out, c->cap);
  return 0;
}

int capa_nft_table_comment(int fd, const char *table, char *out, size_t cap) {
  if (table == NULL || strlen(table) >= 256 || cap == 0) return -EINVAL;
  struct writer *w = malloc(sizeof *w);
  uint8_t *buf = malloc(RECV_BYTES);
  struct comment_ctx c = {out, cap, -ENODATA};
  int rc = w == NULL || buf == NULL ? -ENOMEM : 0;
  if (rc == 0) {
    w->len = 0;
    w->seq = 0;
    size_t msg = begin_message(w, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NLM_F_ACK, NFPROTO_INET, 0);
    put_attr(w, NFTA_TABLE_NAME, table, strlen(table) + 1);
    end_message(w, msg);
    rc = talk(fd, w, buf, on_table, &c);
  }
  free(w);
  free(buf);
  return rc < 0 ? rc : c.found;
}
