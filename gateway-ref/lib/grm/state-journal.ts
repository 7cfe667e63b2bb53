/**
 * The GRM's state journal on disk (the shell around state-records.ts): a folder holding
 * `snapshot.<n>` (the live states and hold-downs when it was written) and `journal.<n>` (every
 * change since, appended), and a `lock` naming the process that owns the folder. Restoring reads
 * the newest snapshot and every journal from its generation on. Appends are group-committed:
 * every record appended while a write is under way goes out in the next single write, and each
 * append resolves once its write is done (with `fsync`, once the data is on the disk). Compaction
 * starts a new generation: new records go to the next journal at once, the snapshot follows, and
 * the older files go when it is in place, so a crash at any point leaves a readable set.
 *
 * Without fsync a batch is written with one synchronous write() once the event loop has read
 * what is waiting (setImmediate): a few microseconds into the page cache, which is all a kill -9
 * needs, where a write through the thread pool would add a round trip to every answer. When the
 * journal has been idle for a millisecond, an append is written at once (no batch to wait for). With
 * fsync the batch goes through the thread pool, and what arrives during a flush waits for the next.
 */
import { ftruncateSync, writeSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CapaError } from '../../../resolver/codec/errors.js';
import { isRunning } from '../pids.js';
import { SNAPSHOT_MAGIC, SnapshotEncoder } from './snapshot-records.js';
import { decodeRecords, encodeRecord, foldRecords, type FoldedStates, type RecordProblem, type StateRecord } from './state-records.js';

export interface StateJournalOptions {
  dir: string;
  /** fdatasync each write before its appends resolve: a power cut then loses nothing acknowledged. */
  fsync?: boolean;
}

export interface RestoredJournal {
  journal: StateJournal;
  states: FoldedStates;
  /** Damaged records skipped and torn tails ignored, each a line for the log. */
  problems: string[];
}

const SNAPSHOT = /^snapshot\.(\d+)$/;
const JOURNAL = /^journal\.(\d+)$/;
/** A journal with no write for this long is idle: an append writes at once instead of batching. */
const IDLE_MS = 1;
/** Snapshot records written per write call: the snapshot of a million states is never one buffer. */
const SNAPSHOT_CHUNK = 8192;

const generation = (name: string, pattern: RegExp): number | undefined => {
  const m = pattern.exec(name);
  return m ? Number(m[1]) : undefined;
};


/** The folder's lock: `lock` holding our pid; a lock whose process is gone is taken over. */
async function lockFolder(dir: string): Promise<void> {
  const path = join(dir, 'lock');
  for (let tries = 0; tries < 2; tries++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isRunning(owner)) {
        throw new CapaError('ERR_CAPA_CONFIG', `the state folder ${dir} is in use by process ${owner} (another capa-gateway); give this one its own --state-dir`);
      }
      await unlink(path).catch(() => undefined);
    }
  }
  throw new CapaError('ERR_CAPA_CONFIG', `cannot lock the state folder ${dir}`);
}

function describe(file: string, problems: readonly RecordProblem[], tornBytes: number): string[] {
  const lines = problems.map((p) => `${file}: damaged record at byte ${p.offset} skipped (${p.why})`);
  if (tornBytes > 0) lines.push(`${file}: torn last record (${tornBytes} bytes, a write cut short) ignored`);
  return lines;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class StateJournal {
  private queue: string[] = [];
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;
  private scheduled = false;
  /** performance.now() of the latest write without fsync. */
  private flushedAt = -Infinity;
  private handle: FileHandle | undefined;
  private handleGen = -1;
  /** Bytes of the open journal known to be whole records: a failed write is cut back to it. */
  private size = 0;
  private closed = false;
  /** Records appended since the newest snapshot. */
  private sinceSnapshot = 0;

  private constructor(private readonly dir: string, private readonly fsync: boolean, private gen: number) {}

  /** Locks the folder (created if need be), reads what it holds, and opens it for appending. */
  static async open(options: StateJournalOptions): Promise<RestoredJournal> {
    const { dir } = options;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await lockFolder(dir);
    } catch (err) {
      if (err instanceof CapaError) throw err;
      throw new CapaError('ERR_CAPA_CONFIG', `cannot use the state folder ${dir}: ${(err as Error).message}`);
    }
    const names = await readdir(dir);
    const snapshots = names.map((n) => generation(n, SNAPSHOT)).filter((g): g is number => g !== undefined);
    const base = snapshots.length > 0 ? Math.max(...snapshots) : 0;
    const journals = names.map((n) => generation(n, JOURNAL)).filter((g): g is number => g !== undefined && g >= base).sort((a, b) => a - b);
    const records: StateRecord[] = [];
    const problems: string[] = [];
    const files = [...(snapshots.length > 0 ? [`snapshot.${base}`] : []), ...journals.map((g) => `journal.${g}`)];
    let lastTorn = 0;
    let folded = 0; /* the snapshot's records */
    for (const file of files) {
      const decoded = decodeRecords(await readFile(join(dir, file)));
      for (const record of decoded.records) records.push(record); // not push(...): a million records overflow the stack
      problems.push(...describe(join(dir, file), decoded.problems, decoded.tornBytes));
      lastTorn = decoded.tornBytes;
      if (SNAPSHOT.test(file)) folded = records.length;
    }
    const gen = journals.length > 0 ? journals[journals.length - 1]! : base;
    const journal = new StateJournal(dir, options.fsync ?? false, gen);
    journal.sinceSnapshot = records.length;
    // A torn last record is cut off, so the next append starts a line of its own.
    await journal.openGeneration(-lastTorn);
    return { journal, states: foldRecords(records, folded), problems };
  }

  /** Records appended since the newest snapshot (what compaction would fold away). */
  get tail(): number {
    return this.sinceSnapshot;
  }

  /** Resolves once the record is written (group commit); rejects when the write failed. */
  append(record: StateRecord): Promise<void> {
    if (this.closed) return Promise.reject(new CapaError('ERR_CAPA_SERVER_FAILURE', 'the state journal is closed'));
    this.queue.push(encodeRecord(record));
    this.sinceSnapshot++;
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.fsync) this.writing ??= this.drain();
    else if (!this.scheduled) {
      // Idle (no write for a while): nothing would join this record, so it goes at once, without
      // the turn of the event loop a batch waits; busy: it waits for what the loop reads with it.
      if (performance.now() - this.flushedAt > IDLE_MS) this.flushNow();
      else {
        this.scheduled = true;
        setImmediate(this.flushNow);
      }
    }
    return done;
  }

  /**
   * Starts a new generation from the snapshot `take` returns (the allocator's live states and
   * hold-downs, taken at the moment the next journal takes over, so no record falls between):
   * the snapshot is written beside the new journal, and the files it replaces go once it is in place.
   */
  async compact(take: () => readonly StateRecord[]): Promise<void> {
    const gen = this.gen + 1;
    const next = await open(join(this.dir, `journal.${gen}`), 'a+', 0o600);
    await this.writing;
    this.flushNow();
    const snapshot = take();
    const old = this.handle;
    this.handle = next;
    this.handleGen = gen;
    this.gen = gen;
    this.size = (await next.stat()).size;
    this.sinceSnapshot = 0;
    await this.writing;
    await old?.close();
    const path = join(this.dir, `snapshot.${gen}`);
    const file = await open(`${path}.tmp`, 'w', 0o600);
    try {
      const encoder = new SnapshotEncoder();
      await file.write(SNAPSHOT_MAGIC);
      for (let i = 0; i < snapshot.length; i += SNAPSHOT_CHUNK) await file.write(encoder.encode(snapshot.slice(i, i + SNAPSHOT_CHUNK)));
      await file.datasync();
    } finally {
      await file.close();
    }
    await rename(`${path}.tmp`, path);
    for (const name of await readdir(this.dir)) {
      const older = generation(name, SNAPSHOT) ?? generation(name, JOURNAL);
      if (older !== undefined && older < gen) await rm(join(this.dir, name), { force: true });
    }
  }

  /** Writes what is queued, then closes; with `removeAll`, deletes the folder's state too. */
  async close(removeAll = false): Promise<void> {
    this.closed = true;
    this.flushNow();
    await this.writing;
    await this.handle?.close();
    this.handle = undefined;
    if (removeAll) {
      for (const name of await readdir(this.dir)) if (SNAPSHOT.test(name) || JOURNAL.test(name)) await rm(join(this.dir, name), { force: true });
    }
    await unlink(join(this.dir, 'lock')).catch(() => undefined);
  }

  /** Opens journal.<gen> for appending (cut by `cut` bytes, a torn tail, when negative). */
  private async openGeneration(cut = 0): Promise<FileHandle> {
    await this.handle?.close();
    const handle = await open(join(this.dir, `journal.${this.gen}`), 'a+', 0o600);
    const { size } = await handle.stat();
    this.size = Math.max(0, size + Math.min(cut, 0));
    if (this.size !== size) await handle.truncate(this.size);
    this.handle = handle;
    this.handleGen = this.gen;
    return handle;
  }

  /** Takes the queued batch for one write. */
  private take(): { bytes: Buffer; waiters: Waiter[] } {
    const batch = { bytes: Buffer.from(this.queue.join('')), waiters: this.waiters };
    this.queue = [];
    this.waiters = [];
    return batch;
  }

  private failure(err: unknown): CapaError {
    return new CapaError('ERR_CAPA_SERVER_FAILURE', `the state journal in ${this.dir} cannot be written: ${(err as Error).message}`, { cause: err });
  }

  /** The synchronous write of everything queued (without fsync). */
  private readonly flushNow = (): void => {
    this.scheduled = false;
    this.flushedAt = performance.now();
    if (this.queue.length === 0) return;
    const { bytes, waiters } = this.take();
    const handle = this.handle;
    try {
      if (handle === undefined || this.handleGen !== this.gen) throw new Error('the journal file is not open');
      writeSync(handle.fd, bytes, 0, bytes.length);
      this.size += bytes.length;
    } catch (err) {
      // A write cut short (a full disk) must not leave half a record for the next one to follow.
      if (handle !== undefined) try { ftruncateSync(handle.fd, this.size); } catch { /* reported below */ }
      const failure = this.failure(err);
      for (const w of waiters) w.reject(failure);
      return;
    }
    for (const w of waiters) w.resolve();
  };

  /** With fsync: one write and flush per round; everything queued meanwhile goes out together. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const { bytes, waiters } = this.take();
      try {
        const handle = this.handle !== undefined && this.handleGen === this.gen ? this.handle : await this.openGeneration();
        try {
          await handle.write(bytes, 0, bytes.length, null);
          await handle.datasync();
          this.size += bytes.length;
        } catch (err) {
          await handle.truncate(this.size).catch(() => undefined);
          throw err;
        }
        for (const w of waiters) w.resolve();
      } catch (err) {
        const failure = this.failure(err);
        for (const w of waiters) w.reject(failure);
      }
    }
    this.writing = undefined;
  }
}
