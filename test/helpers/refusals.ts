// A command line that etcd 3.4 or etcd-ts refuses, read as an operator reads it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { ETCD_BIN, freePort } from './servers.js';

/**
 * How a server refused to run: its exit status (null: it did not exit), its reason, and all it
 * wrote on stderr, each capnslog time stamp replaced by `<time>`.
 */
export interface Refusal {
  status: number | null;
  message: string;
  stderr: string;
}

/** capnslog's time stamp at the start of a line (`2024-05-01 12:00:00.123456 `). */
const CAPNSLOG_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} /gm;

/**
 * Runs etcd 3.4 or etcd-ts with `args` (plus a data dir of its own and a free peer port, which
 * `args` may override) in a scratch directory, with only `env`'s `ETCD_*` variables, and
 * waits at most 20 s for it to exit; with `openFiles`, under that limit on open files.
 * @returns whether it made its data dir, the exit status, stderr, and the reason, taken from etcd's capnslog lines ("error verifying
 *   flags, <reason>. See 'etcd --help'." or "C | etcdmain: <reason>"), from a zap JSON line's
 *   `error` ("failed to verify flags", or a fatal line), or else the first line of stderr (the
 *   flag package's message).
 */
export async function refusal(kind: 'etcd' | 'etcd-ts', args: readonly string[], env: Record<string, string> = {}, openFiles?: number): Promise<Refusal & { madeDataDir: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'refusal-'));
  try {
    const base = ['--data-dir', join(dir, 'data'), '--listen-peer-urls', `http://127.0.0.1:${await freePort()}`];
    let [cmd, cmdArgs] = kind === 'etcd' ? [ETCD_BIN, [...base, ...args]] : [process.execPath, [resolve('bin/etcd-ts.js'), ...base, ...args]];
    // A limit on open files (soft and hard) is set by the shell that then runs the server.
    if (openFiles !== undefined) [cmd, cmdArgs] = ['/bin/sh', ['-c', `ulimit -n ${openFiles} && exec "$@"`, 'sh', cmd, ...cmdArgs]];
    const r = spawnSync(cmd, cmdArgs, { cwd: dir, encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '', ...env } });
    return { status: r.status, message: refusalReason(r.stderr), stderr: r.stderr.replace(CAPNSLOG_TIME, '<time> '), madeDataDir: existsSync(join(dir, 'data')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The reason in a refused server's stderr or log file (see `refusal`); '' when there is none. */
export function refusalReason(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  for (const line of lines) {
    const verify = /error verifying flags, (.*)\. See 'etcd --help'\.$/.exec(line);
    if (verify) return verify[1] as string;
    const critical = / C \| [^:]+: (.*)$/.exec(line);
    if (critical) return critical[1] as string;
    if (line.startsWith('{')) {
      const entry = JSON.parse(line) as { level?: string; msg?: string; error?: string };
      if ((entry.msg === 'failed to verify flags' || entry.level === 'fatal') && entry.error !== undefined) return entry.error;
    }
  }
  return lines[0] ?? '';
}
