#!/usr/bin/env node
/**
 * capa-lab: a CAPA gateway, its terminals and an outside host in network namespaces (root).
 * Exit codes: 0 success, 1 runtime failure (or `status`: the lab is not fully up), 2 bad usage;
 * `exec` exits with the command's own code.
 */
import { commandLine, usageExit } from '../../common/cli.js';
import { isCapaError } from '../../resolver/codec/errors.js';
import { type LabSettings, down, exec, restartGateway, stateDirOf, status, up } from '../lab/lab.js';
import { DEFAULT_PREFIX, type LabPlan, MAX_TERMINALS, checkPrefix } from '../lab/topology.js';
import { DEFAULT_HOLD_DOWN_MS, DEFAULT_LEASE_MS } from '../lib/grm/allocator.js';

const EXIT_RUNTIME = 1;
const EXIT_USAGE = 2;

const usageError = usageExit('capa-lab', EXIT_USAGE, 'commands');

function fail(err: unknown): never {
  if (isCapaError(err, 'ERR_CAPA_INVALID_ARG')) usageError(err.message);
  process.stderr.write(`capa-lab: ${(err as Error).message}\n`);
  process.exit(EXIT_RUNTIME);
}

function describePlan(plan: LabPlan): string {
  const rows = [
    `gateway   ${plan.gateway.netns}  ${plan.gateway.outsideAddress} (DNS front end on port ${plan.dnsPort}, pool ${plan.poolPrefix} and ${plan.poolPrefix6}, data plane nftables)`,
    `outside   ${plan.outside.netns}  ${plan.outside.address} (out.${plan.zone}; ${plan.outside.address6}, out6.${plan.zone}: HTTP ports ${plan.outside.httpPorts.join(', ')}, UDP echo port ${plan.outside.udpPort})`,
    ...plan.terminals.map((t) => `${t.name.padEnd(9)} ${t.netns}  ${t.address} on ${t.ifname} (${t.name}.${plan.zone}, DNS ${t.gatewayAddress}; ${t.address6})`),
  ];
  return `${rows.join('\n')}\n`;
}

function settingsOf(argv: { prefix: string; 'state-dir'?: string }): LabSettings {
  checkPrefix(argv.prefix);
  return { prefix: argv.prefix, stateDir: argv['state-dir'] };
}

function run(action: () => Promise<number>): void {
  action().then((code) => process.exit(code), fail);
}

void commandLine('capa-lab', process.argv.slice(2), usageError, (y) => y
  .usage('$0 <command> [options]')
  .epilog('Builds a CAPA lab in network namespaces (needs root): a gateway running the reference GRM with the nftables '
    + 'data plane and its DNS front end, N terminals each on its own veth link (100.64.0.0/10 and 2001:db8:100::/48), and an outside host '
    + '(203.0.113.10 and 2001:db8:203::10) with HTTP and UDP echo servers that report the peer address and port; the pool '
    + 'prefixes 198.51.100.0/24 and 2001:db8:198::/64 are routed to the gateway. No traffic leaves these namespaces. State (pids, logs, zone, journal) is kept in '
    + `${stateDirOf({ prefix: DEFAULT_PREFIX })} unless --state-dir says otherwise. `
    + 'Exit codes: 0 success, 1 failure (status: lab not fully up), 2 bad usage; exec: the command\'s own.')
  .option('prefix', { type: 'string', default: DEFAULT_PREFIX, describe: 'Name prefix of the lab\'s namespaces (<prefix>gw, <prefix>out, <prefix>t1, ...); use another to run several labs' })
  .option('state-dir', { type: 'string', describe: 'Directory for pids, logs, the zone file and the allocation journal (default /run/capa-lab/<prefix>)' })
  .command('up', 'Build the lab and start its gateway and outside host', (y) => y
    .option('terminals', { type: 'number', default: 2, describe: `Number of terminals (1-${MAX_TERMINALS}), each in its own namespace and on its own link` })
    .option('pool', { type: 'string', describe: 'Pool addresses to hand out, within 198.51.100.0/24 and 2001:db8:198::/64: a-b ranges, CIDR blocks or addresses, comma-separated (default 198.51.100.1-198.51.100.254,2001:db8:198::1-2001:db8:198::fe)' })
    .option('port-strategy', { choices: ['random', 'sequential'] as const, default: 'random' as const, describe: 'How the GRM picks source ports: random or sequential (first free)' })
    .option('lease', { type: 'number', default: DEFAULT_LEASE_MS / 1000, describe: 'Seconds a terminal has to start its flow (the CAPA TTL)' })
    .option('hold-down', { type: 'number', default: DEFAULT_HOLD_DOWN_MS / 1000, describe: 'Seconds before a released (address, port) is reissued for the same destination' })
    .check((a) => {
      if (!(Number.isInteger(a.lease) && a.lease >= 1)) throw new Error(`--lease must be a whole number of seconds >= 1, got ${a.lease}`);
      if (!(Number.isInteger(a['hold-down']) && a['hold-down'] >= 0)) throw new Error(`--hold-down must be a whole number of seconds >= 0, got ${a['hold-down']}`);
      return true;
    }),
  (argv) => run(async () => {
    const plan = await up({ ...settingsOf(argv), terminals: argv.terminals, pool: argv.pool, portStrategy: argv['port-strategy'], leaseSeconds: argv.lease, holdDownSeconds: argv['hold-down'] });
    process.stdout.write(`capa-lab is up (state in ${stateDirOf(settingsOf(argv))}):\n${describePlan(plan)}`);
    return 0;
  }))
  .command('down', 'Remove the lab: its processes, namespaces, links and files (also after a failed or interrupted run)', () => undefined,
    (argv) => run(async () => {
      const report = await down(settingsOf(argv));
      process.stdout.write(report.namespaces.length === 0 ? 'capa-lab: nothing to remove\n'
        : `capa-lab: removed ${report.namespaces.join(', ')} (${report.processes.length} processes stopped)\n`);
      return 0;
    }))
  .command('status', 'Show the lab\'s hosts and whether its namespaces and processes are up', () => undefined,
    (argv) => run(async () => {
      const report = await status(settingsOf(argv));
      if (report.plan === undefined && report.namespaces.length === 0) {
        process.stdout.write('capa-lab: down\n');
        return EXIT_RUNTIME;
      }
      if (report.plan) process.stdout.write(describePlan(report.plan));
      process.stdout.write(`namespaces: ${report.namespaces.join(', ') || 'none'}\n`);
      for (const p of report.processes) process.stdout.write(`${p.name}: ${p.running ? `running (pid ${p.pid})` : 'not running'}\n`);
      process.stdout.write(report.healthy ? 'capa-lab: up\n' : 'capa-lab: not fully up (run capa-lab down, then up)\n');
      return report.healthy ? 0 : EXIT_RUNTIME;
    }))
  .command('restart-gateway', 'Stop the lab\'s gateway and start it again with the same command line: every state and flow carries on', (y) => y
    .option('kill', { type: 'boolean', default: false, describe: 'Stop it with SIGKILL, as a crash or an OOM kill would (default SIGTERM, as an upgrade does)' }),
  (argv) => run(async () => {
    const pid = await restartGateway(settingsOf(argv), argv.kill ? 'SIGKILL' : 'SIGTERM');
    process.stdout.write(`capa-lab: gateway restarted (pid ${pid})\n`);
    return 0;
  }))
  .command('exec <host> [command..]', 'Run a command in a lab host: gw, out, t1, t2, ... (put it after --)', (y) => y
    .positional('host', { type: 'string', demandOption: true, describe: 'gw, out or t<i>' })
    .positional('command', { type: 'string', array: true, describe: 'The command and its arguments' }),
  (argv) => run(() => exec(settingsOf(argv), argv.host, [...(argv.command ?? []), ...((argv['--'] ?? []) as string[]).map(String)])))
  .parserConfiguration({ 'populate--': true })
  .demandCommand(1, 'give a command: up, down, status, restart-gateway or exec'))
  .parse();
