/**
 * What the seccomp supervisor costs per connect: a static program opens, connects and closes a
 * TCP socket to a listener of its own, N times, timing each cycle; run plain, and under
 * capa-run with the destination exempt, so the difference is the supervisor's own work
 * (the connect's notification, the socket copy and checks, the call continued; the two closes'
 * notifications), not a CAPA round trip. Runs alternate, several of each.
 *
 *   node dist/bench/supervisor-connect.js [--cycles 2000] [--runs 5]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchCommandLine, median, percentile, table } from './lib.js';

const CAPA_RUN = fileURLToPath(new URL('../../build/Release/capa-run', import.meta.url));
const TARGET_US = 50;

const argv = benchCommandLine('supervisor-connect', (y) => y
  .usage('$0 [options]\n\nPer-connect cost of the seccomp supervisor: a static connect loop, plain and supervised (destination exempt).')
  .option('cycles', { type: 'number', default: 2000, describe: 'connect cycles per run' })
  .option('runs', { type: 'number', default: 5, describe: 'runs of each variant, alternating' })
  .check((a) => {
    if (!Number.isInteger(a.cycles) || a.cycles < 100) throw new Error('--cycles must be a whole number >= 100');
    if (!Number.isInteger(a.runs) || a.runs < 1) throw new Error('--runs must be a whole number >= 1');
    return true;
  }))
  .parseSync();

const LOOP_C = `
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0 || getsockname(l, (struct sockaddr *)&a, &len) < 0) return 1;
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    int s = accept(l, NULL, NULL);
    close(c);
    close(s);
    printf("%.2f\\n", now_us() - t0);
  }
  return 0;
}
`;

const dir = mkdtempSync(join(tmpdir(), 'capa-bench-supervisor-'));
try {
  const source = join(dir, 'loop.c');
  const program = join(dir, 'loop');
  writeFileSync(source, LOOP_C);
  execFileSync('cc', ['-static', '-O2', '-o', program, source]);
  const variants = [
    { name: 'plain (peer)', command: [program], env: process.env, us: [] as number[] },
    { name: 'under capa-run', command: [CAPA_RUN, '--server', '127.0.0.1:9', '--exempt', '127.0.0.0/8', '--quiet', '--', program], env: process.env, us: [] as number[] },
  ];
  for (let r = 0; r < argv.runs; r++) {
    for (const v of variants) {
      const out = execFileSync(v.command[0]!, [...v.command.slice(1), String(argv.cycles)], { env: v.env, encoding: 'utf8', maxBuffer: 64 << 20 });
      v.us.push(...out.trim().split('\n').map(Number));
    }
  }
  const rows = variants.map((v) => {
    const sorted = [...v.us].sort((x, y) => x - y);
    return [v.name, String(v.us.length), median(v.us).toFixed(1), percentile(sorted, 95).toFixed(1), percentile(sorted, 99).toFixed(1)];
  });
  console.log(`socket + connect + accept + 2 closes on loopback, ${argv.cycles} cycles x ${argv.runs} runs per variant (alternating)`);
  console.log(table([['variant', 'cycles', 'p50 us', 'p95 us', 'p99 us'], ...rows]));
  const overhead = median(variants[1]!.us) - median(variants[0]!.us);
  console.log(`supervisor overhead per connect cycle (p50 difference): ${overhead.toFixed(1)} us (target <= ${TARGET_US} us: ${overhead <= TARGET_US ? 'met' : 'NOT met'})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
