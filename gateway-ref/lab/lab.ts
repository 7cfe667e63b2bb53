/**
 * capa-lab's actions (the shell around topology.ts): build the namespaces and start the lab's
 * gateway and outside host, tear everything down (also after a failed or interrupted run),
 * report the state, run a command in one of the hosts.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CapaError } from '../../resolver/codec/errors.js';
import { runCommand } from '../lib/dataplane/command.js';
import { isRunning } from '../lib/pids.js';
import type { PortStrategy } from '../lib/grm/types.js';
import {
  GATEWAY_SYSCTLS, type LabPlan, isLabNamespace, linkSpecs, nameserverOf, namespaceOf, namespaces, planLab, renderLinks, renderZone, resolvConf,
} from './topology.js';

export const STATE_ROOT = '/run/capa-lab';
const NETNS_ETC = '/etc/netns';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

export interface LabSettings {
  prefix: string;
  /** Pids, logs, zone and configuration; default /run/capa-lab/<prefix>. */
  stateDir?: string;
}

export interface UpSettings extends LabSettings {
  terminals: number;
  /** Pool addresses to hand out (inside the lab's pool prefix); default all of it. */
  pool?: string;
  portStrategy?: PortStrategy;
  leaseSeconds?: number;
  holdDownSeconds?: number;
}

interface LabProcess {
  name: 'gateway' | 'echo';
  netns: string;
  argv: string[];
  ready: RegExp;
}

export function stateDirOf(settings: LabSettings): string {
  return settings.stateDir ?? join(STATE_ROOT, settings.prefix.replace(/-+$/, '') || 'lab');
}

/** The plan of the lab that is up (written by up()). */
export async function readPlan(settings: LabSettings): Promise<LabPlan | undefined> {
  try {
    return JSON.parse(await readFile(join(stateDirOf(settings), 'plan.json'), 'utf8')) as LabPlan;
  } catch {
    return undefined;
  }
}

/** Network namespaces that exist now and belong to a lab with this prefix. */
export async function existingNamespaces(prefix: string): Promise<string[]> {
  const { stdout } = await runCommand(['ip', 'netns', 'list']);
  return stdout.split('\n').map((line) => line.trim().split(/\s+/)[0] ?? '').filter((name) => isLabNamespace(prefix, name));
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new CapaError('ERR_CAPA_PERMISSION', 'capa-lab needs root: it creates network namespaces, veth links and nftables rules (run it with sudo)');
  }
}

/** A process that exists and is not a zombie (a killed lab process may wait a while for its reaper). */

/** Starts a lab process in its namespace, detached, output to <stateDir>/<name>.log, and waits for its ready line. */
async function startProcess(stateDir: string, proc: LabProcess): Promise<number> {
  const log = join(stateDir, `${proc.name}.log`);
  await writeFile(join(stateDir, `${proc.name}.argv.json`), `${JSON.stringify({ netns: proc.netns, argv: proc.argv })}\n`);
  // A restart appends to the log: only what this start writes tells it is ready.
  const from = existsSync(log) ? statSync(log).size : 0;
  const fd = openSync(log, 'a');
  const child = spawn('ip', ['netns', 'exec', proc.netns, ...proc.argv], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new CapaError('ERR_CAPA_SERVER_FAILURE', `cannot start the lab's ${proc.name}`);
  await writeFile(join(stateDir, `${proc.name}.pid`), `${pid}\n`);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const text = readFileSync(log).subarray(from).toString('utf8');
    if (proc.ready.test(text)) return pid;
    if (!isRunning(pid) || Date.now() > deadline) {
      throw new CapaError('ERR_CAPA_SERVER_FAILURE', `the lab's ${proc.name} did not start (log ${log}):\n${text.trim().split('\n').slice(-10).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function distFile(name: string): string {
  return fileURLToPath(new URL(name, import.meta.url));
}

/** Namespaces, links, addresses, routes, gateway sysctls and resolv.conf files of a plan; no processes. */
export async function buildNetwork(plan: LabPlan): Promise<void> {
  await runCommand(['ip', '-batch', '-'], { input: namespaces(plan).map((ns) => `netns add ${ns}\n`).join('') });
  for (const batch of renderLinks(plan)) {
    await runCommand(['ip', '-batch', '-'], { netns: batch.netns, input: `${batch.lines.join('\n')}\n` });
  }
  // Loads conntrack in the namespace, so its sysctls exist.
  await runCommand(['conntrack', '-C'], { netns: plan.gateway.netns });
  await runCommand(['sysctl', '-q', '-w', ...GATEWAY_SYSCTLS], { netns: plan.gateway.netns });
  for (const ns of namespaces(plan)) {
    const nameserver = nameserverOf(plan, ns);
    if (nameserver === undefined) continue;
    await mkdir(join(NETNS_ETC, ns), { recursive: true });
    await writeFile(join(NETNS_ETC, ns, 'resolv.conf'), resolvConf(nameserver, plan.zone));
  }
}

/** Builds the lab; on any failure removes what it built and rethrows. */
export async function up(settings: UpSettings): Promise<LabPlan> {
  const plan = planLab(settings.prefix, settings.terminals, settings.pool);
  requireRoot();
  const leftovers = await existingNamespaces(plan.prefix);
  if (leftovers.length > 0) {
    throw new CapaError('ERR_CAPA_CONFIG', `a lab with prefix "${plan.prefix}" is already up (${leftovers.join(', ')}); run capa-lab down first`);
  }
  const stateDir = stateDirOf(settings);
  try {
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, 'plan.json'), `${JSON.stringify(plan, null, 2)}\n`);
    await buildNetwork(plan);
    const zoneFile = join(stateDir, 'lab.zone');
    await writeFile(zoneFile, renderZone(plan));
    const gateway = [
      process.execPath, distFile('../bin/capa-gateway.js'),
      '--listen', `0.0.0.0:${plan.dnsPort}`, '--pool', plan.pool, '--inside', plan.inside, '--inside', plan.inside6, '--zone', zoneFile,
      '--port-strategy', settings.portStrategy ?? 'random', '--log', join(stateDir, 'journal.jsonl'),
      // Unset, the gateway's own defaults hold.
      ...(settings.leaseSeconds === undefined ? [] : ['--lease', String(settings.leaseSeconds)]),
      ...(settings.holdDownSeconds === undefined ? [] : ['--hold-down', String(settings.holdDownSeconds)]),
      '--data-plane', 'nftables', ...linkSpecs(plan).flatMap((spec) => ['--nft-link', spec]),
      // The lab's own state folder: a restart finds it, and `down` removes it with the lab.
      '--state-dir', join(stateDir, 'grm'),
    ];
    await startProcess(stateDir, { name: 'gateway', netns: plan.gateway.netns, argv: gateway, ready: /capa-gateway listening on/ });
    const out = plan.outside;
    await startProcess(stateDir, {
      name: 'echo',
      netns: out.netns,
      argv: [process.execPath, distFile('./echo-server.js'), ...out.httpPorts.flatMap((port) => ['--http', `${out.address}:${port}`]), ...out.httpPorts.flatMap((port) => ['--http', `[${out.address6}]:${port}`]),
        '--udp', `${out.address}:${out.udpPort}`, '--udp', `[${out.address6}]:${out.udpPort}`],
      ready: /echo-server ready/,
    });
    return plan;
  } catch (err) {
    await down(settings).catch(() => undefined);
    throw err;
  }
}

export interface DownReport {
  namespaces: string[];
  processes: number[];
}

/** Processes running inside a namespace (everything there was started by the lab). */
async function namespacePids(netns: string): Promise<number[]> {
  const { stdout } = await runCommand(['ip', 'netns', 'pids', netns], { allowFailure: true });
  return stdout.split('\n').map((s) => Number(s.trim())).filter((pid) => Number.isInteger(pid) && pid > 0);
}

async function stopPids(pids: number[]): Promise<void> {
  for (const pid of pids) { try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ } }
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (pids.some(isRunning) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  for (const pid of pids.filter(isRunning)) { try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ } }
}

/** Removes every trace of a lab with this prefix, whatever state an earlier run left it in. */
export async function down(settings: LabSettings): Promise<DownReport> {
  requireRoot();
  const present = await existingNamespaces(settings.prefix);
  const pids = (await Promise.all(present.map(namespacePids))).flat();
  await stopPids(pids);
  if (present.length > 0) await runCommand(['ip', '-force', '-batch', '-'], { input: present.map((ns) => `netns del ${ns}\n`).join(''), allowFailure: true });
  const etc = existsSync(NETNS_ETC) ? readdirSync(NETNS_ETC).filter((name) => isLabNamespace(settings.prefix, name)) : [];
  for (const name of etc) await rm(join(NETNS_ETC, name), { recursive: true, force: true });
  await rm(stateDirOf(settings), { recursive: true, force: true });
  const still = await existingNamespaces(settings.prefix);
  if (still.length > 0) throw new CapaError('ERR_CAPA_SERVER_FAILURE', `could not delete the namespaces ${still.join(', ')}`);
  return { namespaces: present, processes: pids };
}

/**
 * Stops the lab's gateway (SIGKILL: as a crash or an OOM kill would; SIGTERM: an upgrade) and
 * starts it again with the same command line; every state and flow carries on. Returns the new pid.
 */
export async function restartGateway(settings: LabSettings, signal: 'SIGKILL' | 'SIGTERM'): Promise<number> {
  requireRoot();
  const stateDir = stateDirOf(settings);
  if (await readPlan(settings) === undefined) throw new CapaError('ERR_CAPA_CONFIG', `no lab with prefix "${settings.prefix}" is up (run capa-lab up)`);
  const { netns, argv } = JSON.parse(await readFile(join(stateDir, 'gateway.argv.json'), 'utf8')) as { netns: string; argv: string[] };
  const pid = Number(readFileSync(join(stateDir, 'gateway.pid'), 'utf8').trim());
  // The pid is `ip netns exec`'s, which execs the gateway: the same process.
  if (isRunning(pid)) {
    process.kill(pid, signal);
    for (let i = 0; i < 100 && isRunning(pid); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return startProcess(stateDir, { name: 'gateway', netns, argv, ready: /capa-gateway listening on/ });
}

export interface StatusReport {
  plan: LabPlan | undefined;
  namespaces: string[];
  processes: { name: string; pid: number | undefined; running: boolean }[];
  /** Everything the plan lists exists and runs. */
  healthy: boolean;
}

export async function status(settings: LabSettings): Promise<StatusReport> {
  const plan = await readPlan(settings);
  const present = await existingNamespaces(settings.prefix);
  const processes = ['gateway', 'echo'].map((name) => {
    let pid: number | undefined;
    try { pid = Number(readFileSync(join(stateDirOf(settings), `${name}.pid`), 'utf8').trim()); } catch { pid = undefined; }
    return { name, pid, running: pid !== undefined && isRunning(pid) };
  });
  const healthy = plan !== undefined && namespaces(plan).every((ns) => present.includes(ns)) && processes.every((p) => p.running);
  return { plan, namespaces: present, processes, healthy };
}

/**
 * A folder of the package's commands (capa-run, capa-dig, ...) as small wrappers, so that
 * `capa-lab exec t1 -- capa-run ...` finds them from a checkout, where npm put none on PATH.
 */
async function commandsDir(settings: LabSettings): Promise<string> {
  const dir = join(stateDirOf(settings), 'bin');
  const root = distFile('../../../');
  const { bin } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  await mkdir(dir, { recursive: true });
  for (const [name, target] of Object.entries(bin)) {
    // A Node script runs under this Node; a native command (capa-run's bin script) as it is.
    const command = target.endsWith('.js') ? `"${process.execPath}" "${join(root, target)}"` : `"${join(root, target)}"`;
    await writeFile(join(dir, name), `#!/bin/sh\nexec ${command} "$@"\n`, { mode: 0o755 });
  }
  return dir;
}

/** Runs a command in a lab host (gw, out, t1, ...) with the caller's terminal; resolves with its exit code. */
export async function exec(settings: LabSettings, host: string, argv: string[]): Promise<number> {
  requireRoot();
  const plan = await readPlan(settings);
  if (plan === undefined) throw new CapaError('ERR_CAPA_CONFIG', `no lab with prefix "${settings.prefix}" is up (run capa-lab up)`);
  const netns = namespaceOf(plan, host);
  if (netns === undefined) {
    throw new CapaError('ERR_CAPA_INVALID_ARG', `unknown host "${host}": use gw, out or t1..t${plan.terminals.length}`);
  }
  if (argv.length === 0) throw new CapaError('ERR_CAPA_INVALID_ARG', 'give the command after --, e.g. capa-lab exec t1 -- curl http://out.lab.example/');
  // capa-socket and capa-run add allocated addresses to this interface (CAPA_INTERFACE).
  const terminal = plan.terminals.find((t) => t.netns === netns);
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${await commandsDir(settings)}${delimiter}${process.env.PATH ?? ''}` };
  if (terminal && process.env.CAPA_INTERFACE === undefined) env.CAPA_INTERFACE = terminal.ifname;
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: 'inherit', env });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
