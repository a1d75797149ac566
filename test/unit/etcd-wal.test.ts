// The reader of etcd 3.4's write-ahead log on files built here frame by frame as etcd's encoder
// writes them (8-byte length with the padding in its top byte, records padded to 8 bytes, the
// crc chained across records and files). Real etcd logs are read in
// test/compat/etcd-data-dir.compat.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { RaftEntry, RaftHardState, WalMetadata, WalRecord } from '../../src/proto/gen/raft_internal.gen.js';
import { readEtcdWal } from '../../src/server/etcd-wal.js';

/** Writes etcd-style WAL files: `records(file)` frames, the crc chained from file to file. */
class WalWriter {
  crc = 0;
  frames: Buffer[] = [];

  record(type: bigint, data: Buffer): this {
    let crc: number;
    if (type === 4n) crc = this.crc;
    else crc = this.crc = crc32c(data, this.crc);
    const rec = Buffer.from(WalRecord.encode({ type, crc, data }).finish());
    const pad = (8 - (rec.length % 8)) % 8;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(rec.length) | (pad > 0 ? (0x80n | BigInt(pad)) << 56n : 0n));
    this.frames.push(len, rec, Buffer.alloc(pad));
    return this;
  }

  entry(index: number, term: number, data = Buffer.from([0xa2, 0x06, 0x00])): this {
    return this.record(2n, Buffer.from(RaftEntry.encode({ Type: 0, Term: BigInt(term), Index: BigInt(index), Data: data }).finish()));
  }

  state(term: number, commit: number): this {
    return this.record(3n, Buffer.from(RaftHardState.encode({ term: BigInt(term), vote: 1n, commit: BigInt(commit) }).finish()));
  }

  /** Writes the frames so far to `file`, with `room` zero bytes after them (etcd preallocates). */
  flush(file: string, room = 4096): Buffer {
    const bytes = Buffer.concat([...this.frames, Buffer.alloc(room)]);
    fs.writeFileSync(file, bytes);
    this.frames = [];
    return bytes;
  }
}

function tmpWalDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-wal-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const indexes = (dir: string) => readEtcdWal(dir).entries.map((e) => Number(e.Index));

describe('readEtcdWal', () => {
  it('reads entries, the last hard state and the member metadata across files, the crc chained through crc records', (t) => {
    const dir = tmpWalDir(t);
    const metadata = Buffer.from(WalMetadata.encode({ NodeID: 0x8e9e05c52164694dn, ClusterID: 0xcdf818194e3a8c32n }).finish());
    const w = new WalWriter().record(4n, Buffer.alloc(0)).record(1n, metadata).entry(1, 1).state(1, 1).entry(2, 2).entry(3, 2);
    w.flush(path.join(dir, '0000000000000000-0000000000000000.wal'));
    w.record(4n, Buffer.alloc(0)).entry(4, 2).state(2, 4);
    w.flush(path.join(dir, '0000000000000001-0000000000000004.wal'));
    fs.writeFileSync(path.join(dir, '0.tmp'), 'not a log file');
    const wal = readEtcdWal(dir);
    assert.deepEqual(wal.entries.map((e) => [Number(e.Index), Number(e.Term)]), [[1, 1], [2, 2], [3, 2], [4, 2]]);
    assert.deepEqual(wal.hardState, { term: 2n, vote: 1n, commit: 4n });
    assert.deepEqual(wal.metadata, { NodeID: 0x8e9e05c52164694dn, ClusterID: 0xcdf818194e3a8c32n });
  });

  it('an entry replaces the log from its index on (a new leader overwrote it)', (t) => {
    const dir = tmpWalDir(t);
    new WalWriter().entry(1, 1).entry(2, 1).entry(3, 1).entry(2, 2).flush(path.join(dir, '0000000000000000-0000000000000000.wal'));
    assert.deepEqual(indexes(dir), [1, 2]);
    assert.equal(readEtcdWal(dir).entries[1]!.Term, 2n);
  });

  it('a torn last record (a zero sector) ends the log; a changed byte elsewhere is a crc mismatch', (t) => {
    const dir = tmpWalDir(t);
    const file = path.join(dir, '0000000000000000-0000000000000000.wal');
    const w = new WalWriter().entry(1, 1);
    const first = w.flush(file, 0).length;
    w.entry(2, 1, Buffer.alloc(1000, 7));
    const bytes = Buffer.concat([fs.readFileSync(file), w.flush(file, 0)]);
    // The second record's data spans sectors; its last sector never reached the disk.
    bytes.fill(0, 1024, bytes.length);
    fs.writeFileSync(file, bytes);
    assert.deepEqual(indexes(dir), [1]);
    // The same record whole but with one byte changed is not torn.
    const w2 = new WalWriter().entry(1, 1).entry(2, 1, Buffer.alloc(1000, 7));
    const whole = w2.flush(file, 0);
    whole[first + 100] = whole[first + 100]! ^ 1;
    fs.writeFileSync(file, whole);
    assert.throws(() => readEtcdWal(dir), /^Error: wal: crc mismatch$/);
  });

  it('a record cut short by the end of the file ends the log', (t) => {
    const dir = tmpWalDir(t);
    const file = path.join(dir, '0000000000000000-0000000000000000.wal');
    const bytes = new WalWriter().entry(1, 1).entry(2, 1).flush(file, 0);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 5));
    assert.deepEqual(indexes(dir), [1]);
  });

  it('no log: no entries', (t) => {
    const dir = tmpWalDir(t);
    assert.deepEqual(readEtcdWal(path.join(dir, 'missing')), { entries: [], lastIndex: 0n, normalEntries: false, hardState: undefined, metadata: undefined });
  });

  it('keeps the entries after the index it is given and the configuration changes; the others count in lastIndex and normalEntries', (t) => {
    const dir = tmpWalDir(t);
    const confChange = (index: number) => Buffer.from(RaftEntry.encode({ Type: 1, Term: 1n, Index: BigInt(index), Data: Buffer.from([0x08, 0x01]) }).finish());
    const w = new WalWriter().record(2n, confChange(1)).entry(2, 1).entry(3, 1).entry(4, 1).entry(5, 2).state(2, 5);
    w.flush(path.join(dir, '0000000000000000-0000000000000000.wal'));
    const wal = readEtcdWal(dir, 3n);
    assert.deepEqual(wal.entries.map((e) => [Number(e.Index), e.Type]), [[1, 1], [4, 0], [5, 0]]);
    assert.equal(wal.lastIndex, 5n);
    assert.equal(wal.normalEntries, true);
    assert.deepEqual(readEtcdWal(dir, 5n).entries.map((e) => Number(e.Index)), [1]);
    assert.equal(readEtcdWal(dir, 5n).normalEntries, true, 'normal entries at or before the index count');
    assert.equal(readEtcdWal(dir, 5n).lastIndex, 5n);
    // A log of configuration changes only (what `snapshot restore` writes).
    new WalWriter().record(2n, confChange(1)).record(2n, confChange(2)).flush(path.join(dir, '0000000000000000-0000000000000000.wal'));
    assert.deepEqual([readEtcdWal(dir, 2n).normalEntries, readEtcdWal(dir, 2n).lastIndex], [false, 2n]);
  });
});
