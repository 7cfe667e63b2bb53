/**
 * The capa-lab topology as data, and the commands and files that build it. Pure.
 *
 *   terminal t<i> (netns <prefix>t<i>)  gw0 100.64.x.(4i+2)/30 ── t<i> 100.64.x.(4i+1)/30 ┐
 *                                            2001:db8:100:<i>::2/64    2001:db8:100:<i>::1/64 │
 *                                                                                        gateway (netns <prefix>gw)
 *   outside host (netns <prefix>out)    gw0 203.0.113.10/24 ──── out0 203.0.113.1/24    ┘  pool 198.51.100.0/24
 *                                            2001:db8:203::10/64     2001:db8:203::1/64        and 2001:db8:198::/64
 *
 * Each terminal has its own point-to-point link; the outside host routes the pool to the
 * gateway. Every link has both families (IPv6 in 2001:db8::/32, <i> in hex); the outside host
 * is `out` (A) and `out6` (AAAA) in the zone. Nothing connects to the host's own interfaces.
 */
import { CapaError } from '../../resolver/codec/errors.js';
import { Realm } from '../lib/dns/realm.js';
import { parsePool } from '../lib/grm/pool.js';

export interface LabTerminal {
  /** `t1`, `t2`, ... as `capa-lab exec` names it. */
  name: string;
  netns: string;
  /** Interface in the terminal's namespace. */
  ifname: string;
  address: string;
  address6: string;
  /** The gateway's end of the link: interface name (in the gateway namespace) and addresses. */
  gatewayIfname: string;
  gatewayAddress: string;
  gatewayAddress6: string;
}

export interface LabPlan {
  prefix: string;
  gateway: { netns: string; outsideIfname: string; outsideAddress: string; outsideAddress6: string };
  outside: { netns: string; ifname: string; address: string; address6: string; httpPorts: number[]; udpPort: number };
  terminals: LabTerminal[];
  /** Pool addresses handed out, and the prefixes routed to the gateway. */
  pool: string;
  poolPrefix: string;
  poolPrefix6: string;
  /** The inside realm, per family. */
  inside: string;
  inside6: string;
  /** Zone of the lab's names: out.<zone>, t1.<zone>, ... */
  zone: string;
  dnsPort: number;
}

export const DEFAULT_PREFIX = 'capa-';
export const MAX_TERMINALS = 1000;
const LINK_PREFIX_LENGTH = 30;
const OUTSIDE_PREFIX_LENGTH = 24;
/** 100.64.0.0, the start of the inside realm (RFC 6598). */
const INSIDE_BASE = (100 << 24) | (64 << 16);

function ipv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join('.');
}

export function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(prefix)) {
    throw new CapaError('ERR_CAPA_INVALID_ARG', `namespace prefix "${prefix}" must be lower-case letters, digits and dashes, starting with a letter (at most 31)`);
  }
}

/** 198.51.100.0/24 and 2001:db8:198::/64 are routed to the gateway; the pool is any part of them. */
const POOL_PREFIX = '198.51.100.0/24';
const POOL_PREFIX6 = '2001:db8:198::/64';
const DEFAULT_POOL = '198.51.100.1-198.51.100.254,2001:db8:198::1-2001:db8:198::fe';
const INSIDE6 = '2001:db8:100::/48';

function checkPool(pool: string): void {
  let addresses: string[];
  try {
    addresses = parsePool(pool);
  } catch (err) {
    throw new CapaError('ERR_CAPA_INVALID_ARG', `--pool: ${(err as Error).message}`);
  }
  const prefixes = new Realm([POOL_PREFIX, POOL_PREFIX6]);
  const outside = addresses.find((a) => !prefixes.contains(a));
  if (outside !== undefined) throw new CapaError('ERR_CAPA_INVALID_ARG', `--pool: ${outside} is not in the lab's pool prefixes ${POOL_PREFIX} and ${POOL_PREFIX6}`);
}

export function planLab(prefix: string, terminals: number, pool = DEFAULT_POOL): LabPlan {
  checkPrefix(prefix);
  checkPool(pool);
  if (!Number.isInteger(terminals) || terminals < 1 || terminals > MAX_TERMINALS) {
    throw new CapaError('ERR_CAPA_INVALID_ARG', `--terminals must be a whole number from 1 to ${MAX_TERMINALS}, got ${terminals}`);
  }
  return {
    prefix,
    gateway: { netns: `${prefix}gw`, outsideIfname: 'out0', outsideAddress: '203.0.113.1', outsideAddress6: '2001:db8:203::1' },
    outside: { netns: `${prefix}out`, ifname: 'gw0', address: '203.0.113.10', address6: '2001:db8:203::10', httpPorts: [80, 8080], udpPort: 7 },
    terminals: Array.from({ length: terminals }, (_, k) => {
      const i = k + 1;
      const base = INSIDE_BASE + 4 * i;
      return {
        name: `t${i}`,
        netns: `${prefix}t${i}`,
        ifname: 'gw0',
        address: ipv4(base + 2),
        address6: `2001:db8:100:${i.toString(16)}::2`,
        gatewayIfname: `t${i}`,
        gatewayAddress: ipv4(base + 1),
        gatewayAddress6: `2001:db8:100:${i.toString(16)}::1`,
      };
    }),
    pool,
    poolPrefix: POOL_PREFIX,
    poolPrefix6: POOL_PREFIX6,
    inside: '100.64.0.0/10',
    inside6: INSIDE6,
    zone: 'lab.example',
    dnsPort: 53,
  };
}

/** Every namespace of the plan. */
export function namespaces(plan: LabPlan): string[] {
  return [plan.gateway.netns, plan.outside.netns, ...plan.terminals.map((t) => t.netns)];
}

/** Does `name` look like a namespace of a lab with this prefix (whatever its size)? */
export function isLabNamespace(prefix: string, name: string): boolean {
  if (!name.startsWith(prefix)) return false;
  return /^(gw|out|t\d+)$/.test(name.slice(prefix.length));
}

/** The host a `capa-lab exec` name stands for. */
export function namespaceOf(plan: LabPlan, host: string): string | undefined {
  if (host === 'gw') return plan.gateway.netns;
  if (host === 'out') return plan.outside.netns;
  return plan.terminals.find((t) => t.name === host)?.netns;
}

/** One `ip -batch` script, run in `netns` (undefined: the host's namespace, where only the veth pairs are created). */
export interface IpBatch {
  netns?: string;
  lines: string[];
}

/** An interface with its IPv4 (with prefix length) and IPv6 /64 address, then up; DAD off, so v6 works at once. */
function interfaceUp(ifname: string, address: string, prefixLength: number, address6: string): string[] {
  return [`address add ${address}/${prefixLength} dev ${ifname}`, `address add ${address6}/64 dev ${ifname} nodad`, `link set ${ifname} up`];
}

/** The ip commands that wire the plan, after its namespaces exist. */
export function renderLinks(plan: LabPlan): IpBatch[] {
  const gw = plan.gateway;
  const out = plan.outside;
  // Each veth pair is created straight into its two namespaces, so no name ever exists in the host's.
  const pairs: IpBatch = {
    lines: [
      `link add ${gw.outsideIfname} netns ${gw.netns} type veth peer name ${out.ifname} netns ${out.netns}`,
      ...plan.terminals.map((t) => `link add ${t.gatewayIfname} netns ${gw.netns} type veth peer name ${t.ifname} netns ${t.netns}`),
    ],
  };
  const gateway: IpBatch = {
    netns: gw.netns,
    lines: [
      'link set lo up',
      ...interfaceUp(gw.outsideIfname, gw.outsideAddress, OUTSIDE_PREFIX_LENGTH, gw.outsideAddress6),
      ...plan.terminals.flatMap((t) => interfaceUp(t.gatewayIfname, t.gatewayAddress, LINK_PREFIX_LENGTH, t.gatewayAddress6)),
    ],
  };
  const outside: IpBatch = {
    netns: out.netns,
    lines: [
      'link set lo up',
      ...interfaceUp(out.ifname, out.address, OUTSIDE_PREFIX_LENGTH, out.address6),
      `route add ${plan.poolPrefix} via ${gw.outsideAddress}`,
      `route add ${plan.poolPrefix6} via ${gw.outsideAddress6}`,
    ],
  };
  const terminals: IpBatch[] = plan.terminals.map((t) => ({
    netns: t.netns,
    lines: [
      'link set lo up',
      ...interfaceUp(t.ifname, t.address, LINK_PREFIX_LENGTH, t.address6),
      `route add default via ${t.gatewayAddress}`,
      `route add ::/0 via ${t.gatewayAddress6}`,
    ],
  }));
  return [pairs, gateway, outside, ...terminals];
}

/**
 * Gateway sysctls: forwarding on; conntrack forgets a closed TCP flow after 1 s instead of
 * 120 s, so the GRM hears of the flow's end at once (its hold-down of 2 MSL already protects
 * TIME_WAIT on the hosts).
 */
export const GATEWAY_SYSCTLS = [
  'net.ipv4.ip_forward=1',
  'net.ipv6.conf.all.forwarding=1',
  'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1',
  'net.netfilter.nf_conntrack_tcp_timeout_close=1',
];

/** The lab's zone: the outside host and every terminal by name. */
export function renderZone(plan: LabPlan): string {
  return [
    `$ORIGIN ${plan.zone}.`,
    '$TTL 60',
    `out A ${plan.outside.address}`,
    `out6 AAAA ${plan.outside.address6}`,
    `gw A ${plan.gateway.outsideAddress}`,
    ...plan.terminals.map((t) => `${t.name} A ${t.address}`),
    '',
  ].join('\n');
}

/** `--nft-link` specifications: each terminal's address on its gateway-side interface. */
export function linkSpecs(plan: LabPlan): string[] {
  return plan.terminals.flatMap((t) => [`${t.address}=${t.gatewayIfname}`, `${t.address6}=${t.gatewayIfname}`]);
}

/** /etc/netns/<ns>/resolv.conf, which `ip netns exec` shows the namespace's programs as /etc/resolv.conf. */
export function resolvConf(nameserver: string, zone: string): string {
  return `# capa-lab\nnameserver ${nameserver}\nsearch ${zone}\n`;
}

/** The DNS server a namespace's programs use: the gateway's near address. */
export function nameserverOf(plan: LabPlan, netns: string): string | undefined {
  if (netns === plan.outside.netns) return plan.gateway.outsideAddress;
  return plan.terminals.find((t) => t.netns === netns)?.gatewayAddress;
}
