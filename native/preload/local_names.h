/*
 * Names the program's own system resolves without DNS, which capa-run leaves to libc: localhost
 * (RFC 6761), this machine's hostname, and /etc/hosts entries when /etc/nsswitch.conf consults
 * `files` before `dns` (glibc's order). With `dns` first, CAPA is asked first, and a name it does
 * not know goes on to the hosts file as glibc's [NOTFOUND=continue] does. A connect to an
 * outside address found either way is still pinned: it asks CAPA by reverse name.
 */
#ifndef CAPA_PRELOAD_LOCAL_NAMES_H
#define CAPA_PRELOAD_LOCAL_NAMES_H

/* 1 when `name` resolves here without asking CAPA first. */
int capa_is_local_name(const char *name);

/* 1 when the hosts file has `name` and nsswitch.conf consults it after `dns`. */
int capa_is_hosts_name_after_dns(const char *name);

#endif
