/**
 * The `nftables` data plane's ruleset and element updates, rendered as nft script text. Pure.
 *
 * One element per gateway state, keyed in the inside-bound direction:
 *   state_<proto><family>:   aOB . pB . aOG . pA -> mark of the owning terminal's link (complete)
 *   partial_<proto><family>: aOB . aOG . pA      -> mark                              (pB unknown)
 * Inside-bound packets get their mark from these maps (`ip rule fwmark` then picks the link's
 * routing table); outside-bound packets look the same maps up with the tuple reversed and must
 * find the mark of the link they arrived on (anti-spoofing), so no second set is needed.
 * Separate maps per protocol because nft 1.0.x mangles concatenations of more than five fields.
 *
 * ICMP errors about a flow go to its terminal too. One from outside is RELATED to the flow's
 * conntrack entry, which took its link's mark when the flow began. One the gateway sends itself
 * (fragmentation needed, PMTU discovery) carries the mark of the packet it answers (the data
 * plane sets fwmark_reflect): outside-bound packets keep their link's mark with FROM_TERMINAL
 * set, which no inside-bound fwmark rule matches (they route by the main table), while a
 * locally sent packet with that mark routes by its link's table (`iif lo` rule).
 */
import { createHash } from 'node:crypto';
import { CapaError } from '../../../resolver/codec/errors.js';
import { type Family, canonicalIp, ipFamily, ipToBytes } from '../../../resolver/codec/ip.js';
import type { OutsideTuple, ProtoNumber } from '../grm/types.js';

/** A terminal's point-to-point link, as the gateway sees it. */
export interface NftLink {
  /** The gateway-side interface name. */
  ifname: string;
  /** The terminal's inside addresses on this link (the DNS requester addresses); the first of each family is the next hop. */
  terminals: string[];
  /** Packet mark of inside-bound packets for this link; also its routing table number. */
  mark: number;
}

export interface NftLayout {
  /** Name of the `inet` table the driver owns. */
  table: string;
  links: NftLink[];
  /** Pool addresses (aOG), canonical; inside-bound packets to them that match no state are dropped. */
  pool: string[];
}

export const DEFAULT_TABLE = 'capa';
/** First link mark / routing table; tables below 256 include the kernel's own (local, main, default). */
export const DEFAULT_MARK_BASE = 1000;

/** Set on an outside-bound packet's mark (its link's mark) once its state is checked. */
export const FROM_TERMINAL = 0x80000000;

/** The gateway's ICMP errors and resets take the mark of the packet they answer (see FROM_TERMINAL). */
export const REFLECT_SYSCTLS = ['net.ipv4.fwmark_reflect=1', 'net.ipv6.fwmark_reflect=1'];

const PROTO_NAMES: Record<ProtoNumber, 'tcp' | 'udp'> = { 6: 'tcp', 17: 'udp' };
const FAMILIES: Family[] = [4, 6];
const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;
const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

/** nft's name for the address selector of a family. */
function ipSelector(family: Family): 'ip' | 'ip6' {
  return family === 4 ? 'ip' : 'ip6';
}

export function stateMapName(proto: ProtoNumber, family: Family): string {
  return `state_${PROTO_NAMES[proto]}${family}`;
}

export function partialMapName(proto: ProtoNumber, family: Family): string {
  return `partial_${PROTO_NAMES[proto]}${family}`;
}

export function inboundMapName(family: Family): string {
  return `inbound${family}`;
}

function configError(message: string): CapaError {
  return new CapaError('ERR_CAPA_CONFIG', message);
}

/**
 * `ADDRESS=IFNAME` specifications (repeatable, comma-separated) -> links, numbered in order of
 * first appearance from `markBase`. Several addresses may share a link.
 */
export function parseLinkSpecs(specs: readonly string[], markBase = DEFAULT_MARK_BASE): NftLink[] {
  const links = new Map<string, NftLink>();
  const owner = new Map<string, string>();
  for (const spec of specs.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '')) {
    const [address = '', ifname = '', extra] = spec.split('=');
    if (extra !== undefined || ipFamily(address) === 0 || address.includes('%')) {
      throw configError(`terminal link "${spec}" must look like 100.64.0.2=veth-t1 (terminal inside address = gateway-side interface)`);
    }
    if (!IFNAME.test(ifname)) throw configError(`terminal link "${spec}": "${ifname}" is not an interface name (1-15 letters, digits, _ . @ -)`);
    const terminal = canonicalIp(address);
    const earlier = owner.get(terminal);
    if (earlier !== undefined && earlier !== ifname) {
      throw configError(`terminal ${terminal} is given two links, ${earlier} and ${ifname}`);
    }
    owner.set(terminal, ifname);
    let link = links.get(ifname);
    if (link === undefined) links.set(ifname, (link = { ifname, terminals: [], mark: markBase + links.size }));
    if (!link.terminals.includes(terminal)) link.terminals.push(terminal);
  }
  if (links.size === 0) throw configError('no terminal links: give at least one ADDRESS=IFNAME');
  return [...links.values()];
}

export function checkLayout(layout: NftLayout): void {
  if (!TABLE_NAME.test(layout.table)) throw configError(`nft table name "${layout.table}" must be a letter followed by letters, digits or _`);
  for (const link of layout.links) {
    if (!IFNAME.test(link.ifname)) throw configError(`"${link.ifname}" is not an interface name`);
    if (!Number.isInteger(link.mark) || link.mark < 256 || link.mark > 0xffffffef) {
      throw configError(`link ${link.ifname}: mark/table ${link.mark} must be a whole number from 256 to 4294967279`);
    }
  }
}

/** Consecutive pool addresses collapsed into `a-b` ranges, per family. */
export function poolRanges(pool: readonly string[]): Record<Family, string[]> {
  const ranges: Record<Family, string[]> = { 4: [], 6: [] };
  const values: Record<Family, bigint[]> = { 4: [], 6: [] };
  for (const address of pool) {
    const family = ipFamily(address);
    if (family === 0) throw configError(`pool entry is not an IP address: "${address}"`);
    values[family].push(ipToBytes(address).reduce((v, b) => (v << 8n) | BigInt(b), 0n));
  }
  for (const family of FAMILIES) {
    const sorted = values[family].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (let i = 0; i < sorted.length; ) {
      let j = i;
      while (j + 1 < sorted.length && sorted[j + 1]! - sorted[j]! <= 1n) j++;
      const first = fromBigInt(sorted[i]!, family);
      ranges[family].push(i === j ? first : `${first}-${fromBigInt(sorted[j]!, family)}`);
      i = j + 1;
    }
  }
  return ranges;
}

function fromBigInt(value: bigint, family: Family): string {
  const bytes = new Uint8Array(family === 4 ? 4 : 16);
  let v = value;
  for (let i = bytes.length - 1; i >= 0; i--) { bytes[i] = Number(v & 0xffn); v >>= 8n; }
  if (family === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return canonicalIp(groups.join(':'));
}

function terminalPairs(links: readonly NftLink[], family: Family): string[] {
  return links.flatMap((l) => l.terminals.filter((t) => ipFamily(t) === family).map((t) => `${quoted(l.ifname)} . ${t}`));
}

function elements(items: readonly string[]): string {
  return items.length === 0 ? '' : ` elements = { ${items.join(', ')} };`;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

function quoted(ifname: string): string {
  return `"${ifname}"`;
}

function addrType(family: Family): string {
  return family === 4 ? 'ipv4_addr' : 'ipv6_addr';
}

/** Maps and sets of one family; `terminals` are `"ifname" . address` pairs. */
function familyDeclarations(family: Family, pool: string[], terminals: string[]): string[] {
  const ip = ipSelector(family);
  const lines: string[] = [];
  for (const proto of [6, 17] as const) {
    lines.push(`  map ${stateMapName(proto, family)} { typeof ${ip} saddr . th sport . ${ip} daddr . th dport : meta mark; }`);
    lines.push(`  map ${partialMapName(proto, family)} { typeof ${ip} saddr . ${ip} daddr . th dport : meta mark; }`);
  }
  lines.push(`  map ${inboundMapName(family)} { typeof ${ip} saddr . ${ip} daddr : ${ip} daddr; flags timeout; }`);
  lines.push(`  set pool${family} { type ${addrType(family)}; flags interval;${elements(pool)} }`);
  lines.push(`  set terminals${family} { type ifname . ${addrType(family)};${elements(terminals)} }`);
  return lines;
}

/** prerouting: inside-bound packets take the mark of the state they match; pool traffic matching none is dropped. */
function inboundRules(family: Family): string[] {
  const ip = ipSelector(family);
  const rules: string[] = [];
  for (const proto of [6, 17] as const) {
    const l4 = `meta l4proto ${PROTO_NAMES[proto]}`;
    rules.push(`    ${l4} meta mark set ${ip} saddr . th sport . ${ip} daddr . th dport map @${stateMapName(proto, family)} accept`);
    rules.push(`    ${l4} meta mark set ${ip} saddr . ${ip} daddr . th dport map @${partialMapName(proto, family)} accept`);
  }
  return rules;
}

/**
 * Before conntrack, from a terminal link: a pool source needs a state owned by this link (the
 * reversed tuple's mark), so a terminal can neither send from another's (aOG, pA) nor touch
 * another's connection tracking (a forged RST would end the other flow).
 */
function outboundRules(family: Family): string[] {
  const ip = ipSelector(family);
  const rules: string[] = [];
  for (const proto of [6, 17] as const) {
    const l4 = `meta l4proto ${PROTO_NAMES[proto]}`;
    const check = `meta mark . iifname @owners meta mark set meta mark | ${hex(FROM_TERMINAL)} accept`;
    rules.push(`    ${l4} meta mark set ${ip} daddr . th dport . ${ip} saddr . th sport map @${stateMapName(proto, family)} ${check}`);
    rules.push(`    ${l4} meta mark set ${ip} daddr . ${ip} saddr . th sport map @${partialMapName(proto, family)} ${check}`);
  }
  return rules;
}

/** The chains (the hooks); the sets and maps they use are declared beside them. */
export function renderChains(): string[] {
  return [
    '  chain route_inbound {',
    '    type filter hook prerouting priority mangle; policy accept;',
    '    iifname @links return',
    '    meta l4proto { icmp, ipv6-icmp } ct state related ct mark != 0 meta mark set ct mark accept',
    ...FAMILIES.flatMap(inboundRules),
    '  }',
    // Only a new connection that matches no state takes the inbound path (a state's own traffic never does).
    '  chain inbound_nat {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    iifname != @links meta mark 0 dnat ip to ip saddr . ip daddr map @inbound4',
    '    iifname != @links meta mark 0 dnat ip6 to ip6 saddr . ip6 daddr map @inbound6',
    '  }',
    '  chain drop_unmatched {',
    // After dstnat, so inbound-path packets already carry the terminal's inside address.
    '    type filter hook prerouting priority dstnat + 10; policy accept;',
    '    iifname @links return',
    '    meta mark 0 ip daddr @pool4 counter name unmatched drop',
    '    meta mark 0 ip6 daddr @pool6 counter name unmatched drop',
    '  }',
    '  chain outbound {',
    '    type filter hook prerouting priority raw; policy accept;',
    '    iifname != @links accept',
    // The terminal's own inside address: DNS to the gateway, inside-to-inside, inbound-path replies.
    '    iifname . ip saddr @terminals4 accept',
    '    iifname . ip6 saddr @terminals6 accept',
    // IPv6 neighbour discovery and MLD on the link itself; never forwarded. A terminal resolving
    // the gateway for a packet from its pool address sends its solicitation from that address.
    '    ip6 saddr { ::, fe80::/10 } accept',
    '    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept',
    ...FAMILIES.flatMap(outboundRules),
    '    counter name spoofed drop',
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    '    iifname @links jump from_terminal',
    '    oifname @links jump inside_bound',
    '  }',
    '  chain from_terminal {',
    '    oifname @links accept',
    '    ct status dnat accept',
    `    ct state new ct mark set meta mark & ${hex(~FROM_TERMINAL >>> 0)}`,
    '    ip saddr @pool4 accept',
    '    ip6 saddr @pool6 accept',
    // An inside address may not leave for the outside realm: only pool sources are relayed.
    '    counter name spoofed drop',
    '  }',
    '  chain inside_bound {',
    '    ct status dnat accept',
    '    meta mark != 0 accept',
    '    counter name unmatched drop',
    '  }',
  ];
}

/** Names of the chains renderChains() declares, e.g. to delete them. */
export const CHAIN_NAMES = ['route_inbound', 'inbound_nat', 'drop_unmatched', 'outbound', 'forward', 'from_terminal', 'inside_bound'] as const;

/** The table's sets, maps, counters and chains (no elements of the state maps). */
function tableBody(layout: NftLayout): string[] {
  checkLayout(layout);
  const pool = poolRanges(layout.pool);
  const links = layout.links.map((l) => quoted(l.ifname));
  const owners = layout.links.map((l) => `${l.mark} . ${quoted(l.ifname)}`);
  return [
    `  set links { type ifname;${elements(links)} }`,
    `  set owners { type mark . ifname;${elements(owners)} }`,
    ...FAMILIES.flatMap((f) => familyDeclarations(f, pool[f], terminalPairs(layout.links, f))),
    '  counter spoofed { comment "outside-bound packets from a terminal with no state of its own"; }',
    '  counter unmatched { comment "inside-bound packets matching no state"; }',
    ...renderChains(),
  ];
}

/**
 * What the table's comment says of its layout: a restart keeps a table whose comment is this
 * layout's (its elements relay on), and replaces any other.
 */
export function layoutFingerprint(layout: NftLayout): string {
  return `capa layout ${createHash('sha256').update(tableBody(layout).join('\n')).digest('hex').slice(0, 16)}`;
}

/**
 * The whole table, replacing any earlier copy in the same transaction (the leading
 * `table`+`delete table` pair makes the delete safe when there is none): leftovers of an earlier
 * run disappear and nothing is duplicated. Its comment is the layout's fingerprint.
 */
export function renderRuleset(layout: NftLayout): string {
  const t = layout.table;
  return [
    `table inet ${t} {}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    `  comment "${layoutFingerprint(layout)}";`,
    ...tableBody(layout),
    '}',
    '',
  ].join('\n');
}

/** Removes the table if it exists. */
export function renderTeardown(table: string): string {
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

/** One map element: where it lives, its key and its value, in nft syntax. */
export interface MapElement {
  map: string;
  key: string;
  value: string;
}

export interface ElementOp {
  action: 'add' | 'delete';
  element: MapElement;
  /** Kernel-side expiry (inbound bindings). */
  timeoutMs?: number;
}

/** The element that routes `tuple`'s inside-bound packets to the link with `mark`. */
export function stateElement(tuple: OutsideTuple, mark: number): MapElement {
  // On every install: the allocator's addresses are canonical, so the family shows in a colon.
  const family: Family = tuple.localAddress.includes(':') ? 6 : 4;
  if (tuple.remoteAddress.includes(':') !== (family === 6)) {
    throw new CapaError('ERR_CAPA_INVALID_ARG', `outside tuple mixes or lacks address families: ${tuple.remoteAddress} / ${tuple.localAddress}`);
  }
  if (tuple.remotePort === undefined) {
    return { map: partialMapName(tuple.proto, family), key: `${tuple.remoteAddress} . ${tuple.localAddress} . ${tuple.localPort}`, value: String(mark) };
  }
  return {
    map: stateMapName(tuple.proto, family),
    key: `${tuple.remoteAddress} . ${tuple.remotePort} . ${tuple.localAddress} . ${tuple.localPort}`,
    value: String(mark),
  };
}

/** The element that sends `querier`'s packets for `poolAddress` to `terminal` (inbound path). */
export function inboundElement(querier: string, poolAddress: string, terminal: string): MapElement {
  const family = ipFamily(poolAddress);
  if (family === 0 || ipFamily(querier) !== family || ipFamily(terminal) !== family) {
    throw new CapaError('ERR_CAPA_INVALID_ARG', `inbound binding mixes or lacks address families: ${querier} -> ${poolAddress} -> ${terminal}`);
  }
  return { map: inboundMapName(family), key: `${querier} . ${poolAddress}`, value: terminal };
}

function renderItem(op: ElementOp): string {
  if (op.action === 'delete') return op.element.key;
  const timeout = op.timeoutMs === undefined ? '' : ` timeout ${Math.max(1, Math.ceil(op.timeoutMs / 1000))}s`;
  return `${op.element.key}${timeout} : ${op.element.value}`;
}

/** Element changes as one script (one transaction), consecutive changes to one map merged. */
export function renderElementOps(table: string, ops: readonly ElementOp[]): string {
  const lines: string[] = [];
  for (let i = 0; i < ops.length; ) {
    const { action, element: { map } } = ops[i]!;
    const items: string[] = [];
    for (; i < ops.length && ops[i]!.action === action && ops[i]!.element.map === map; i++) items.push(renderItem(ops[i]!));
    lines.push(`${action} element inet ${table} ${map} { ${items.join(', ')} }`);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** `ip -batch` lines (per family) giving each link its fwmark rule and routing table. */
export function renderRoutes(links: readonly NftLink[], priority: number): Record<Family, string[]> {
  const out: Record<Family, string[]> = { 4: [], 6: [] };
  for (const link of links) {
    for (const family of FAMILIES) {
      const hop = link.terminals.find((t) => ipFamily(t) === family);
      if (hop === undefined) continue;
      out[family].push(`rule add fwmark ${link.mark} table ${link.mark} priority ${priority}`);
      out[family].push(`rule add iif lo fwmark ${hex((link.mark | FROM_TERMINAL) >>> 0)} table ${link.mark} priority ${priority}`);
      out[family].push(`route replace default via ${hop} dev ${link.ifname} table ${link.mark}`);
    }
  }
  return out;
}

/** One rule of `ip -j rule show`, the fields we read. */
export interface RuleEntry {
  priority?: number;
  table?: string;
  /** `0x3e8` */
  fwmark?: string;
  iif?: string;
}

/** `ip -batch -force` lines removing every rule at `priority` and flushing the tables they pointed to. */
export function renderRouteCleanup(rules: readonly RuleEntry[], priority: number): string[] {
  const ours = rules.filter((r) => r.priority === priority);
  const tables = new Set(ours.map((r) => r.table).filter((t): t is string => t !== undefined && /^\d+$/.test(t)));
  return [...ours.map(() => `rule del priority ${priority}`), ...[...tables].map((t) => `route flush table ${t}`)];
}
