/**
 * Exclusive ownership of a data directory (etcd takes a file lock on its WAL; LMDB alone would
 * let two processes share the files). The lock is a file `<dir>/etcd-ts.lock` created with
 * O_EXCL and holding the owner's PID. A lock left by a process that no longer runs (a kill -9,
 * also one its parent has not reaped yet) is stale and is taken over.
 */
import fs from 'node:fs';
import path from 'node:path';

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
}

export class DataDirLock {
  /** Path of the lock file. */
  readonly file: string;
  private released = false;

  private constructor(file: string) {
    this.file = file;
  }

  /**
   * Takes the lock of `dir` (created if missing). Throws DataDirLockedError when a running
   * process holds it.
   */
  static acquire(dir: string): DataDirLock {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, 'etcd-ts.lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
        return new DataDirLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = Number(fs.readFileSync(file, 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isRunning(owner)) {
        throw new DataDirLockedError(
          `data dir ${path.dirname(dir)} is in use by another etcd-ts process (pid ${owner}); stop it or choose another --data-dir`,
        );
      }
      if (owner === process.pid) {
        throw new DataDirLockedError(`data dir ${path.dirname(dir)} is already open in this process`);
      }
      fs.rmSync(file, { force: true });
    }
    throw new DataDirLockedError(`could not lock data dir ${path.dirname(dir)}`);
  }

  /** Removes the lock file; later calls do nothing. */
  release(): void {
    if (this.released) return;
    this.released = true;
    fs.rmSync(this.file, { force: true });
  }
}

/**
 * The first of `files` that another process holds a lock on, as etcd 3.4 holds its WAL files
 * (an OFD lock) and bbolt its database (flock) while it runs; undefined when none is locked,
 * or when the system does not list its locks (`/proc/locks`, Linux). Files that do not exist
 * are not locked.
 */
export function lockedFile(files: readonly string[]): string | undefined {
  const present: [file: string, id: string][] = [];
  for (const file of files) {
    let st: fs.BigIntStats;
    try {
      st = fs.statSync(file, { bigint: true });
    } catch {
      continue;
    }
    const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
    const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
    present.push([file, `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`]);
  }
  // Only when there is a file to look for: a process's first read of /proc/locks takes ~10 ms.
  if (present.length === 0) return undefined;
  let locks: string;
  try {
    locks = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  // "1: OFDLCK ADVISORY  WRITE -1 fe:00:2204731 0 EOF": the device (major:minor, hex) and inode.
  const held = new Set(locks.split('\n').map((line) => line.split(/\s+/)[5]));
  return present.find(([, id]) => held.has(id))?.[0];
}

/**
 * True while process `pid` exists and has not exited: a zombie (killed, not yet reaped by its
 * parent) holds no lock, as it would hold no file lock in etcd.
 */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true; // no procfs: the signal check is all there is
  }
  // `pid (comm) S …`: the state follows the last ')' (comm may hold any character).
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}
