// The bbolt writer and reader (src/mvcc/bolt-file.ts) on random buckets: what is written reads
// back entry for entry, in order, whatever the sizes (empty buckets, thousands of entries on
// several branch levels, values spanning overflow pages). That real bbolt reads our files, and
// that we read its own, is checked against etcd 3.4 by test/compat/snapshot.compat.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Backend } from '../../src/mvcc/backend.js';
import { boltEntries, writeBoltImage, type BoltBucket } from '../../src/mvcc/bolt-file.js';
import { revToBytes } from '../../src/mvcc/revision.js';
import { importEtcdSnapshot } from '../../src/server/snapshot.js';

type Entry = [string, string];

/** Unique, sorted entries (as bbolt stores them) from random pairs. */
const sortedEntries = (pairs: [string, Buffer][]): [Buffer, Buffer][] => {
  const byKey = new Map(pairs.map(([k, v]) => [k, v]));
  return [...byKey].map(([k, v]) => [Buffer.from(k, 'hex'), v] as [Buffer, Buffer]).sort((a, b) => Buffer.compare(a[0], b[0]));
};

/** Writes `buckets` to `file` through `writeBoltImage`, checking the size it announced first. */
async function writeBoltFile(file: string, buckets: readonly BoltBucket[]): Promise<void> {
  const parts: Buffer[] = [];
  let announced = -1;
  await writeBoltImage(() => buckets, {
    size: (bytes) => {
      assert.equal(parts.length, 0, 'the size comes before the bytes');
      announced = bytes;
    },
    write: async (bytes) => {
      parts.push(Buffer.from(bytes));
    },
  });
  const image = Buffer.concat(parts);
  assert.equal(image.length, announced);
  writeFileSync(file, image);
}

describe('bbolt files', () => {
  it('read back what was written, bucket by bucket and key by key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bolt-'));
    try {
      const value = fc.oneof({ weight: 8, arbitrary: fc.uint8Array({ maxLength: 300 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 4000, maxLength: 20_000 }) });
      const bucket = fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }).map((k) => Buffer.from(k).toString('hex')), value.map((v) => Buffer.from(v))), { maxLength: 3000 });
      const names = fc.uniqueArray(fc.stringMatching(/^[a-zA-Z]{1,12}$/), { minLength: 1, maxLength: 6 });
      await fc.assert(
        fc.asyncProperty(names, fc.array(bucket, { minLength: 6, maxLength: 6 }), async (bucketNames, contents) => {
          const file = join(dir, 'db');
          const buckets = bucketNames.sort().map((name, i) => ({ name: Buffer.from(name), entries: sortedEntries(contents[i]!) }));
          await writeBoltFile(file, buckets);
          assert.equal(statSync(file).size % 4096, 0);
          const read = new Map<string, Entry[]>(bucketNames.map((n) => [n, []]));
          for (const { bucket: b, key: k, value: v } of boltEntries(file)) read.get(b.toString())!.push([k.toString('hex'), v.toString('hex')]);
          for (const b of buckets) {
            assert.deepEqual(read.get(b.name.toString()), b.entries.map(([k, v]) => [k.toString('hex'), v.toString('hex')]));
          }
        }),
        { numRuns: 40 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads back a bucket deep enough for three levels of branches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bolt-'));
    try {
      const file = join(dir, 'db');
      // ~400 leaves of ~10 entries; a branch page holds ~100 children: leaves, two branch levels.
      const entries = Array.from({ length: 4000 }, (_, i) => [Buffer.from(`key/${String(i).padStart(6, '0')}`), Buffer.alloc(350, i % 251)] as [Buffer, Buffer]);
      await writeBoltFile(file, [{ name: Buffer.from('key'), entries }, { name: Buffer.from('meta'), entries: [] }]);
      const read: [Buffer, Buffer][] = [];
      for (const { bucket: b, key: k, value: v } of boltEntries(file)) {
        assert.equal(b.toString(), 'key');
        read.push([k, v]);
      }
      assert.deepEqual(read, entries);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a file that is not a bbolt database', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bolt-'));
    try {
      const file = join(dir, 'not-bolt');
      writeFileSync(file, Buffer.alloc(8192, 1));
      assert.throws(() => [...boltEntries(file)], /is not a bbolt database/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('importEtcdSnapshot', () => {
  it('commits the entries as it reads them, every chunk of bytes, and leaves every one in the store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bolt-import-'));
    try {
      const file = join(dir, 'db');
      const keys = Array.from({ length: 3000 }, (_, i) => [revToBytes({ main: i + 2, sub: 0 }), Buffer.alloc(350, i % 251)] as [Buffer, Buffer]);
      const index = Buffer.alloc(8);
      index.writeBigUInt64BE(42n);
      await writeBoltFile(file, [
        { name: Buffer.from('key'), entries: keys },
        { name: Buffer.from('lease'), entries: [[Buffer.from('lease-1'), Buffer.from('l')]] },
        { name: Buffer.from('meta'), entries: [[Buffer.from('consistent_index'), index], [Buffer.from('scheduledCompactRev'), revToBytes({ main: 9, sub: 0 })]] },
      ]);
      const backend = Backend.open(join(dir, 'data'));
      let commits = 0;
      const forceCommit = backend.forceCommit.bind(backend);
      backend.forceCommit = () => {
        commits++;
        return forceCommit();
      };
      assert.equal(await importEtcdSnapshot(backend, file, 64 << 10), 42n);
      // ~1 MB of entries in chunks of 64 KiB: committed as they were read.
      assert.ok(commits >= 15, `${commits} commits`);
      await backend.close();
      const reopened = Backend.open(join(dir, 'data'));
      try {
        assert.deepEqual(
          [...reopened.range('key')].map(({ key, value }) => [key.toString('hex'), value.toString('hex')]),
          keys.map(([k, v]) => [k.toString('hex'), v.toString('hex')]),
        );
        assert.deepEqual([...reopened.range('lease')].map(({ key }) => key.toString()), ['lease-1']);
        assert.equal(reopened.getMeta('scheduledCompactRev'), '9');
      } finally {
        await reopened.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
