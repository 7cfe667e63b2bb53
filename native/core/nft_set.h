/*
 * Bulk access to the elements of one nf_tables set or map (family inet)
 * through nfnetlink, and a table's comment, for the gateway's state maps: a restart loads a million
 * elements in about a second, where the nft language takes twenty to parse
 * them. (A dump costs the kernel O(n^2): every chunk walks the set from its
 * start, about 50 s for a million elements; use it for small sets.)
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

struct capa_nft_apply_result {
  size_t applied;   /* records that went in */
  size_t conflicts; /* records skipped: an add of a key held with other data, a delete of an absent key */
};

/* Adds or deletes `count` records, in transactions of at most about 128 KiB
 * each (an add of a key already there with the same data is no error). A
 * transaction that fails changes nothing: without skip_conflicts the first
 * failure is returned (-errno; out says how many went in before it); with it,
 * a transaction refused for a conflict (EEXIST, EBUSY, ENOENT) is retried in
 * halves until the records in conflict stand alone, and those are skipped. */
int capa_nft_apply(int fd, const struct capa_nft_set *set, enum capa_nft_op op, const uint8_t *records,
                   size_t count, int skip_conflicts, struct capa_nft_apply_result *out);

/* The comment of table `table` (family inet) into out (NUL-terminated): 0, or
 * -ENOENT (no such table), -ENODATA (no comment), -ENOBUFS (longer than cap).
 * One request: nft itself lists a table by reading every set's elements. */
int capa_nft_table_comment(int fd, const char *table, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
