/* Real libc symbols and the reentrancy guard: see real.h. */
#define _GNU_SOURCE
#include "real.h"

#include <dlfcn.h>
#include <pthread.h>

static struct capa_real table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* initial-exec: the library is loaded at startup (LD_PRELOAD), so its TLS is static and the
 * guard costs one memory access, never a call into the dynamic linker. */
static __thread int guard_depth __attribute__((tls_model("initial-exec")));

/* dlsym returns void *; POSIX guarantees it converts to a function pointer. */
#define RESOLVE(name) (*(void **)&table.name = dlsym(RTLD_NEXT, #name))

static void resolve_table(void) {
  RESOLVE(getaddrinfo);
  RESOLVE(gethostbyname);
  RESOLVE(gethostbyname2);
  RESOLVE(gethostbyname_r);
  RESOLVE(gethostbyname2_r);
  RESOLVE(connect);
  RESOLVE(bind);
  RESOLVE(sendto);
  RESOLVE(sendmsg);
  RESOLVE(close);
  RESOLVE(closefrom);
  RESOLVE(dup2);
  RESOLVE(dup3);
  RESOLVE(syscall);
  RESOLVE(_exit);
  RESOLVE(execve);
  RESOLVE(execvpe);
  RESOLVE(posix_spawn);
  RESOLVE(posix_spawnp);
}

const struct capa_real *capa_real(void) {
  pthread_once(&table_once, resolve_table);
  return &table;
}

void capa_guard_enter(void) { guard_depth++; }
void capa_guard_leave(void) { guard_depth--; }
int capa_guarded(void) { return guard_depth > 0; }
