#!/bin/sh
# Links capa-run statically: against musl where Debian's musl-tools is installed, else glibc.
# A static glibc program probes the CPU (cpuid) as it starts, which a virtual machine traps:
# measured here, 0.45 ms of every capa-run. musl does not.
#   cc-static.sh OUTPUT SOURCE...
set -eu
out=$1
shift
flags="-O2 -std=c99 -Wall -Wextra -static"
if command -v musl-gcc >/dev/null 2>&1; then
  # musl's compiler sees no system headers: give it the kernel's (linux-libc-dev) alone.
  include="$(dirname "$out")/musl-kernel-headers"
  mkdir -p "$include"
  ln -sfn /usr/include/linux "$include/linux"
  ln -sfn /usr/include/asm-generic "$include/asm-generic"
  ln -sfn "/usr/include/$(gcc -print-multiarch)/asm" "$include/asm"
  exec musl-gcc $flags -isystem "$include" -o "$out" "$@" -lpthread
fi
exec gcc $flags -o "$out" "$@" -lpthread
