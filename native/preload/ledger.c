/* The allocation ledger for capa-run: see ledger.h. */
#define _GNU_SOURCE
#include "ledger.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

void capa_ledger_note(const struct capa_config *cfg, char sign, const struct capa_allocation *a) {
  char path[sizeof cfg->ledger_dir + 16], line[3 * CAPA_NAME_TEXT_MAX + 128], aog[CAPA_ADDRESS_TEXT_MAX];
  if (cfg->ledger_dir[0] == '\0') return;
  capa_address_format(a->record.family, a->record.addr, aog, sizeof aog);
  int n = snprintf(line, sizeof line, "%c %s %s %s %u %u %u %s\n", sign, cfg->servers[a->server].text, a->host, a->qname,
                   (unsigned)a->record.flags, (unsigned)a->record.proto, (unsigned)a->record.port, aog);
  snprintf(path, sizeof path, "%s/%ld", cfg->ledger_dir, (long)getpid());
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || n <= 0 || (size_t)n >= sizeof line) {
    if (fd >= 0) close(fd);
    return;
  }
  /* One write of a line under PIPE_BUF: lines of several threads never interleave. */
  ssize_t ignored = write(fd, line, (size_t)n);
  (void)ignored;
  close(fd);
}
