/* CAPA_LOG and stderr: see log.h. */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define LINE_MAX_LEN 1024

/* Opened per line with O_APPEND: events are rare, lines from threads and forked children stay
 * whole, and the app can close any descriptor without losing our log. */
static void append_line(const char *path, const char *line, size_t n) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t ignored = write(fd, line, n);
  (void)ignored; /* nowhere to report a failed log write */
  close(fd); /* under the guard: the real close */
}

void capa_log_event(const struct capa_config *cfg, const char *event, const char *fields, ...) {
  char line[LINE_MAX_LEN], members[LINE_MAX_LEN - 128];
  struct timespec now;
  va_list ap;
  if (cfg->log_path[0] == '\0') return;
  int saved = errno;
  va_start(ap, fields);
  vsnprintf(members, sizeof members, fields, ap);
  va_end(ap);
  clock_gettime(CLOCK_REALTIME, &now);
  int n = snprintf(line, sizeof line, "{\"time\":%lld.%03ld,\"pid\":%d,\"event\":\"%s\"%s%s}\n",
                   (long long)now.tv_sec, now.tv_nsec / 1000000, (int)getpid(), event,
                   members[0] ? "," : "", members);
  if (n > 0) append_line(cfg->log_path, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  errno = saved;
}

void capa_json_text(const char *text, char *out, size_t len) {
  size_t o = 0;
  for (const char *p = text; *p != '\0' && o + 7 < len; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, len - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  if (len > 0) out[o] = '\0';
}

void capa_notice(const struct capa_config *cfg, const char *fmt, ...) {
  char message[512], line[600], escaped[sizeof message * 2];
  va_list ap;
  int saved = errno;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (!cfg->quiet) {
    int n = snprintf(line, sizeof line, "capa-run: %s: %s\n", program_invocation_short_name, message);
    if (n > 0) {
      ssize_t ignored = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
      (void)ignored;
    }
  }
  capa_json_text(message, escaped, sizeof escaped);
  capa_log_event(cfg, "error", "\"message\":\"%s\"", escaped);
  errno = saved;
}
