/* Names resolved without DNS: see local_names.h. */
#define _GNU_SOURCE
#include "local_names.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HOSTS "/etc/hosts"
#define NSSWITCH "/etc/nsswitch.conf"
#define LINE_MAX_LEN 1024
#define BLANKS " \t\r\n"

/* Name equality as DNS has it: ASCII case folded, one trailing dot ignored on either side. */
static int same_name(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > 0 && a[na - 1] == '.') na--;
  if (nb > 0 && b[nb - 1] == '.') nb--;
  return na == nb && na > 0 && strncasecmp(a, b, na) == 0;
}

/* RFC 6761: localhost and every name under it. */
static int is_localhost(const char *name) {
  size_t n = strlen(name);
  if (n > 0 && name[n - 1] == '.') n--;
  const size_t len = sizeof "localhost" - 1;
  return n >= len && strncasecmp(name + n - len, "localhost", len) == 0 && (n == len || name[n - len - 1] == '.');
}

enum hosts_order { HOSTS_UNUSED, HOSTS_BEFORE_DNS, HOSTS_AFTER_DNS };

/* Where the hosts line of nsswitch.conf puts `files` against `dns`. Without the file glibc asks
 * dns, then files. */
static enum hosts_order hosts_order(const char *nsswitch_path) {
  char line[LINE_MAX_LEN];
  enum hosts_order order = HOSTS_UNUSED;
  int seen_dns = 0;
  FILE *f = fopen(nsswitch_path, "re");
  if (f == NULL) return HOSTS_AFTER_DNS;
  while (fgets(line, sizeof line, f) != NULL) {
    char *p = line + strspn(line, BLANKS), *save = NULL;
    if (strncmp(p, "hosts:", 6) != 0) continue;
    for (char *word = strtok_r(p + 6, BLANKS, &save); word != NULL; word = strtok_r(NULL, BLANKS, &save)) {
      if (strcmp(word, "dns") == 0) seen_dns = 1;
      if (strcmp(word, "files") == 0) {
        order = seen_dns ? HOSTS_AFTER_DNS : HOSTS_BEFORE_DNS;
        break;
      }
    }
    break;
  }
  fclose(f);
  return order;
}

/* Whether a line of the hosts file names `name` (after its address, before any comment). */
static int hosts_line_names(char *line, const char *name) {
  char *save = NULL;
  line[strcspn(line, "#")] = '\0';
  if (strtok_r(line, BLANKS, &save) == NULL) return 0; /* the address */
  for (char *word = strtok_r(NULL, BLANKS, &save); word != NULL; word = strtok_r(NULL, BLANKS, &save)) {
    if (same_name(word, name)) return 1;
  }
  return 0;
}

static int in_hosts_file(const char *name, const char *hosts_path) {
  char line[LINE_MAX_LEN];
  int found = 0;
  FILE *f = fopen(hosts_path, "re");
  if (f == NULL) return 0;
  while (!found && fgets(line, sizeof line, f) != NULL) found = hosts_line_names(line, name);
  fclose(f);
  return found;
}

int capa_is_local_name(const char *name) {
  char host[256];
  if (is_localhost(name)) return 1;
  if (gethostname(host, sizeof host) == 0) {
    host[sizeof host - 1] = '\0';
    if (same_name(name, host)) return 1;
  }
  return hosts_order(NSSWITCH) == HOSTS_BEFORE_DNS && in_hosts_file(name, HOSTS);
}

int capa_is_hosts_name_after_dns(const char *name) {
  return hosts_order(NSSWITCH) == HOSTS_AFTER_DNS && in_hosts_file(name, HOSTS);
}
