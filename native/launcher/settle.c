/* Settling the allocation ledger after the program: see settle.h. */
#define _GNU_SOURCE
#include "settle.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/socket_table.h"
#include "../preload/release.h"

struct entry {
  char line[3 * CAPA_NAME_TEXT_MAX + 128]; /* the line without its sign: the allocation's key */
  int held;
};

static int alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

/* "<server> <zone> <qname> <flags> <proto> <port> <address>" into a and its server into cfg. */
static int parse_entry(const char *line, struct capa_allocation *a, struct capa_config *cfg) {
  char server[CAPA_SERVER_TEXT_MAX], address[CAPA_ADDRESS_TEXT_MAX], why[200], extra;
  unsigned flags, proto, port;
  memset(a, 0, sizeof *a);
  if (sscanf(line, "%55s %253s %253s %u %u %u %45s %c", server, a->host, a->qname, &flags, &proto, &port, address, &extra) != 7 ||
      capa_server_parse(server, strlen(server), &cfg->servers[0], why, sizeof why) < 0 ||
      capa_address_parse(address, &a->record.family, a->record.addr) != CAPA_OK) {
    return -1;
  }
  a->record.flags = (uint8_t)flags, a->record.proto = (uint8_t)proto, a->record.port = (uint16_t)port;
  a->server = 0;
  return 0;
}

/* The allocations a ledger file still holds: every '+' line not matched by a later '-'. */
static size_t outstanding(FILE *f, struct entry **out) {
  struct entry *list = NULL;
  size_t n = 0, cap = 0;
  char line[sizeof list->line + 2];
  while (fgets(line, sizeof line, f) != NULL) {
    size_t len = strcspn(line, "\n");
    if (line[len] != '\n' || (line[0] != '+' && line[0] != '-') || line[1] != ' ') continue; /* a torn last line */
    line[len] = '\0';
    if (line[0] == '-') {
      for (size_t i = n; i-- > 0;) {
        if (list[i].held && strcmp(list[i].line, line + 2) == 0) {
          list[i].held = 0;
          break;
        }
      }
      continue;
    }
    if (n == cap) {
      struct entry *grown = realloc(list, (cap = cap ? 2 * cap : 16) * sizeof *list);
      if (grown == NULL) break;
      list = grown;
    }
    snprintf(list[n].line, sizeof list[n].line, "%s", line + 2);
    list[n++].held = 1;
  }
  *out = list;
  return n;
}

static void settle_file(const char *path) {
  struct entry *list = NULL;
  FILE *f = fopen(path, "re");
  if (f == NULL) return;
  size_t n = outstanding(f, &list);
  fclose(f);
  for (size_t i = 0; i < n; i++) {
    struct capa_config one = *capa_config(); /* read only when something is left to release */
    struct capa_allocation a;
    if (!list[i].held || parse_entry(list[i].line, &a, &one) < 0) continue;
    /* A forked child that outlived the process still has the socket (ssh -f): its flow goes on. */
    if (capa_local_socket_holds(a.record.proto == 17 ? 17 : 6, a.record.family, a.record.addr, a.record.port)) continue;
    one.n_servers = 1;
    one.ledger_dir[0] = '\0'; /* the ledger is being settled, not written */
    capa_release(&one, &a, "process gone");
  }
  free(list);
  unlink(path);
}

void capa_ledger_settle(const char *dir) {
  char path[4200];
  DIR *d = opendir(dir);
  int left = 0;
  if (d == NULL) return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (e->d_name[0] == '.') continue;
    if (*end != '\0' || pid <= 0 || alive((pid_t)pid)) {
      left = 1;
      continue;
    }
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    settle_file(path);
  }
  closedir(d);
  if (!left) rmdir(dir);
}
