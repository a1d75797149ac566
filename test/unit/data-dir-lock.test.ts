// The data dir lock (src/server/data-dir-lock.ts): a lock file whose process runs keeps others
// out; one whose process has exited, even one not yet reaped (a zombie), is taken over.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { DataDirLock, DataDirLockedError } from '../../src/server/data-dir-lock.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it('keeps a running owner\'s lock, and takes over the lock of a zombie', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'data-dir-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // `sleep 30` is the shell itself after exec: it never reaps the `true` it started, which
  // stays a zombie.
  const parent = spawn('sh', ['-c', 'true & exec sleep 30'], { stdio: 'ignore' });
  t.after(() => parent.kill('SIGKILL'));
  let zombie: number | undefined;
  for (let i = 0; i < 100 && zombie === undefined; i++) {
    await sleep(20);
    const [child] = readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number);
    if (child !== undefined && readFileSync(`/proc/${child}/stat`, 'utf8').includes(') Z ')) zombie = child;
  }
  assert.ok(zombie !== undefined, 'a zombie to test with');
  const lockFile = join(dir, 'etcd-ts.lock');
  writeFileSync(lockFile, String(parent.pid));
  assert.throws(() => DataDirLock.acquire(dir), DataDirLockedError);
  writeFileSync(lockFile, String(zombie));
  const lock = DataDirLock.acquire(dir);
  assert.equal(readFileSync(lockFile, 'utf8'), String(process.pid));
  lock.release();
});
