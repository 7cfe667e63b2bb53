/*
 * Names the program's own system resolves without DNS, which capa-run leaves to libc: localhost
 * (RFC 6761), this machine's hostname, and /etc/hosts entries when /etc/nsswitch.conf consults
 * `files` before `dns` (glibc's order). A connect to an outside address found that way is still
 * pinned: it asks CAPA by reverse name.
 */
#ifndef CAPA_PRELOAD_LOCAL_NAMES_H
#define CAPA_PRELOAD_LOCAL_NAMES_H

/* 1 when `name` is such a name on this machine. */
int capa_is_local_name(const char *name);

/* The same test against the given files and hostname (NULL: none), for tests. */
int capa_local_name_in(const char *name, const char *hosts_path, const char *nsswitch_path, const char *hostname);

#endif
