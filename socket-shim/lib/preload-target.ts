/**
 * What capa-run decides before it starts a program, without I/O: whether the dynamic linker
 * will honour LD_PRELOAD for it (an ELF program with an interpreter, of the library's class and
 * machine; a script whose interpreter is such a program) or the seccomp supervisor must pin it
 * (a statically linked one), how CAPA_EXEMPT and LD_PRELOAD are spelled. File access is injected as a `read(offset, length)` function.
 */
import { ipFamily, ipToBytes, bytesToIp } from '../../resolver/lib/ip.js';
import { invalidArg } from '../../resolver/lib/errors.js';

/** Reads up to `length` bytes at `offset` (fewer at the end of the file). */
export type ReadAt = (offset: number, length: number) => Buffer;

export type Executable =
  | { kind: 'elf'; elfClass: 32 | 64; machine: number; interpreter: string | undefined }
  | { kind: 'script'; interpreter: string }
  | { kind: 'other' };

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const PT_INTERP = 3;
const SHEBANG_MAX = 256;

interface ElfLayout {
  le: boolean;
  is64: boolean;
}

function readUInt(buf: Buffer, offset: number, bytes: 2 | 4 | 8, layout: ElfLayout): number {
  if (buf.length < offset + bytes) throw new RangeError('truncated ELF file');
  if (bytes === 2) return layout.le ? buf.readUInt16LE(offset) : buf.readUInt16BE(offset);
  if (bytes === 4) return layout.le ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
  return Number(layout.le ? buf.readBigUInt64LE(offset) : buf.readBigUInt64BE(offset));
}

/** The PT_INTERP path of an ELF file, or undefined when it has none (a static program). */
function elfInterpreter(head: Buffer, read: ReadAt, layout: ElfLayout): string | undefined {
  const word = layout.is64 ? 8 : 4;
  const phoff = readUInt(head, layout.is64 ? 0x20 : 0x1c, word, layout);
  const phentsize = readUInt(head, layout.is64 ? 0x36 : 0x2a, 2, layout);
  const phnum = readUInt(head, layout.is64 ? 0x38 : 0x2c, 2, layout);
  const table = read(phoff, phentsize * phnum);
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    if (readUInt(table, at, 4, layout) !== PT_INTERP) continue;
    const offset = readUInt(table, at + (layout.is64 ? 8 : 4), word, layout);
    const size = readUInt(table, at + (layout.is64 ? 32 : 16), word, layout);
    return read(offset, size).toString('latin1').replace(/\0.*$/s, '');
  }
  return undefined;
}

/** Classifies a file by its first bytes (and, for ELF, its program headers). */
export function inspectExecutable(read: ReadAt): Executable {
  const head = read(0, 64);
  if (head.subarray(0, 4).equals(ELF_MAGIC)) {
    const layout: ElfLayout = { is64: head[4] === 2, le: head[5] === 1 };
    const machine = readUInt(head, 0x12, 2, layout);
    return { kind: 'elf', elfClass: layout.is64 ? 64 : 32, machine, interpreter: elfInterpreter(head, read, layout) };
  }
  if (head.subarray(0, 2).toString('latin1') === '#!') {
    const line = read(0, SHEBANG_MAX).toString('latin1').slice(2).split('\n')[0]!.trim();
    const interpreter = line.split(/[ \t]/)[0] ?? '';
    if (interpreter !== '') return { kind: 'script', interpreter };
  }
  return { kind: 'other' };
}

/** How capa-run can reach a program: LD_PRELOAD, the seccomp supervisor, or not at all (why). */
export type Reach = { how: 'preload' } | { how: 'supervisor' } | { how: 'refused'; why: string };

/**
 * How `library` reaches `target`: LD_PRELOAD where the dynamic linker loads it, the seccomp
 * supervisor for a statically linked program (no dynamic linker), refused for another machine.
 */
export function reachOf(path: string, target: Executable, library: Executable): Reach {
  if (target.kind !== 'elf') return { how: 'preload' };
  if (target.interpreter === undefined) return { how: 'supervisor' };
  if (library.kind === 'elf' && (library.elfClass !== target.elfClass || library.machine !== target.machine)) {
    return { how: 'refused', why: `${path} is a ${target.elfClass}-bit program for ELF machine ${target.machine}, but the capa-run library is `
      + `${library.elfClass}-bit for machine ${library.machine}; the dynamic linker would skip the library `
      + 'and run the program without CAPA — use a build of the program for this machine' };
  }
  return { how: 'preload' };
}

/** Refusal for set-user-ID / set-group-ID files and files with capabilities (secure execution). */
export function privilegeRefusal(path: string, mode: number, capabilities: string | undefined): string | undefined {
  const SETUID = 0o4000;
  const SETGID = 0o2000;
  const reason = (mode & SETUID) !== 0 ? 'is set-user-ID'
    : (mode & SETGID) !== 0 ? 'is set-group-ID'
      : capabilities !== undefined && capabilities !== '' ? `has file capabilities (${capabilities})` : undefined;
  if (reason === undefined) return undefined;
  return `${path} ${reason}; the dynamic linker ignores LD_PRELOAD for such programs (secure execution), `
    + 'so capa-run cannot hook it — run an unprivileged copy, or use capa-socket';
}

/** `a.b.c.d/len`, `x::/len` or one address (a host prefix), as CAPA_EXEMPT takes it, in canonical text. */
export function parseExempt(text: string): string {
  const [address = '', len, extra] = text.trim().split('/');
  const family = ipFamily(address);
  const bits = family === 4 ? 32 : 128;
  if (family === 0 || extra !== undefined || (len !== undefined && (!/^\d{1,3}$/.test(len) || Number(len) > bits))) {
    throw invalidArg(`--exempt "${text}" is not a prefix like 192.0.2.0/24, 2001:db8::/32 or one address`);
  }
  return `${bytesToIp(ipToBytes(address), 0, family === 4 ? 4 : 16)}/${len ?? bits}`;
}

/** LD_PRELOAD with the library first (glibc separates entries by spaces or colons). */
export function preloadValue(library: string, existing: string | undefined): string {
  if (/[\s:]/.test(library)) {
    throw invalidArg(`the capa-run library path "${library}" holds a space or colon, which LD_PRELOAD cannot carry; install the package in another folder`);
  }
  const rest = existing?.trim() ?? '';
  return rest === '' ? library : `${library}:${rest}`;
}
