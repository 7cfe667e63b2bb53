/*
 * Bulk access to the elements of one nf_tables set or map (family inet)
 * through nfnetlink, for the gateway's state maps: a restart reads back a
 * million elements and loads or reconciles them in about a second, where the
 * nft language takes tens of seconds to parse and print them.
 *
 * Elements are fixed-size records: the key as the kernel holds it (each field
 * of a concatenation padded to 4 bytes, addresses and ports in network
 * order), then, for a map, its 4-byte data (a mark, host order). Plain C99 +
 * Linux headers, no global state; every call reports -errno.
 */
#ifndef CAPA_NFT_SET_H
#define CAPA_NFT_SET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct capa_nft_set {
  const char *table;
  const char *name;
  uint32_t key_len; /* a multiple of 4, at most 64 */
  int is_map;       /* 1: records carry 4 bytes of data after the key */
};

/* Bytes of one record of `set`. */
size_t capa_nft_record_len(const struct capa_nft_set *set);

/* A NETLINK_NETFILTER socket in the network namespace at `netns_path`
 * (e.g. /run/netns/<name>; NULL: the caller's own). Returns the fd, or
 * -errno (-EPERM: setns needs CAP_SYS_ADMIN). */
int capa_nft_open(const char *netns_path);

/* Every element of `set`: *records is malloc'd (the caller frees it) and
 * holds *count records. -ENOENT when the table or set does not exist. */
int capa_nft_dump(int fd, const struct capa_nft_set *set, uint8_t **records, size_t *count);

enum capa_nft_op { CAPA_NFT_ADD, CAPA_NFT_DELETE };

/* Adds or deletes `count` records, in transactions of at most about 128 KiB
 * each (an add of a key already there with the same data is no error). Stops
 * at the first failed transaction (which changed nothing) and returns its
 * -errno; *done (if given) says how many records went in before it. */
int capa_nft_apply(int fd, const struct capa_nft_set *set, enum capa_nft_op op,
                   const uint8_t *records, size_t count, size_t *done);

struct capa_nft_sync_result {
  size_t added;   /* wanted, not in the kernel */
  size_t deleted; /* in the kernel, not wanted */
  size_t kept;    /* in both (by key; the kernel's data stays) */
};

/* Makes `set` hold exactly the keys of `wanted` (count records; a key given
 * twice counts once): reads it back, deletes what is not wanted, adds what
 * is missing. A key the kernel has with other data keeps the kernel's. */
int capa_nft_sync(int fd, const struct capa_nft_set *set, const uint8_t *wanted, size_t count,
                  struct capa_nft_sync_result *out);

#ifdef __cplusplus
}
#endif

#endif
