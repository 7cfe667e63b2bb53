/**
 * A real OpenSSH server for tests, on a loopback address and port of the test's choosing, that
 * lets this user in with a key it generates (so `ssh ... 'echo $SSH_CONNECTION'` reports the
 * client's address and port as the server saw them). Root only: sshd's privilege separation.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from '../../common/ready-process.js';

export interface Sshd {
  /** Arguments that make ssh(1) log in to this server as this user, before the command. */
  clientArgs: string[];
  user: string;
  stop(): Promise<void>;
}

export async function startSshd(sshd: string, sshKeygen: string, address: string, port: number): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'capa-sshd-'));
  const key = (name: string): string => {
    const path = join(dir, name);
    execFileSync(sshKeygen, ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
    return path;
  };
  const hostKey = key('host_key');
  const userKey = key('user_key');
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${userKey}.pub`));
  const config = join(dir, 'sshd_config');
  writeFileSync(config, [`ListenAddress ${address}:${port}`, `HostKey ${hostKey}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'UseDNS no', 'LogLevel VERBOSE', ''].join('\n'));
  mkdirSync('/run/sshd', { recursive: true }); // its privilege-separation folder, which the package's service makes
  const child: ChildProcess = spawn(sshd, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd not listening within 5 s:\n${log}`)), 5000);
    child.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('Server listening')) { clearTimeout(timer); resolve(); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`sshd exited (${code}):\n${log}`)); });
  });
  const user = userInfo().username;
  return {
    user,
    clientArgs: ['-F', '/dev/null', '-i', userKey, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'LogLevel=ERROR', '-p', String(port), `${user}@${address}`],
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
