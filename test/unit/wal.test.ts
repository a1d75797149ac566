import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { open } from 'lmdb';

import { Backend } from '../../src/mvcc/backend.js';
import { Wal, WAL_HEADER_BYTES } from '../../src/mvcc/wal.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-wal-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A record buffer for `Wal.append` carrying `text`. */
function record(text: string): Buffer {
  return Buffer.concat([Buffer.alloc(WAL_HEADER_BYTES), Buffer.from(text)]);
}

function texts(records: { payload: Buffer }[]): string[] {
  return records.map((r) => r.payload.toString());
}

describe('Wal', () => {
  it('reads back every appended record in order, and appends continue after the last one', async () => {
    const first = Wal.open(dir);
    assert.deepEqual(first.records, []);
    for (let seq = 1; seq <= 3; seq++) await first.wal.append(seq, record(`r${seq}`));
    first.wal.close();

    const second = Wal.open(dir);
    assert.deepEqual(second.records.map((r) => r.seq), [1, 2, 3]);
    assert.deepEqual(texts(second.records), ['r1', 'r2', 'r3']);
    await second.wal.append(4, record('r4'));
    second.wal.close();
    assert.deepEqual(texts(Wal.open(dir).records), ['r1', 'r2', 'r3', 'r4']);
  });

  it('writes through O_DSYNC descriptors, and without them under --unsafe-no-fsync', async () => {
    /** Linux's mask of a descriptor's access mode (not in Node's fs.constants). */
    const O_ACCMODE = 0o3;
    /**
     * The open flags of this process's append descriptors on the log's segments
     * (/proc/self/fdinfo): read-write ones. The zero fill's own descriptor is write-only, and
     * open only until its background sync ends.
     */
    const segmentFlags = (): number[] =>
      fs.readdirSync('/proc/self/fd').flatMap((fd) => {
        let target: string;
        try {
          target = fs.readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return [];
        }
        if (!target.startsWith(dir)) return [];
        const flags = parseInt(/^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
        return (flags & O_ACCMODE) === fs.constants.O_RDWR ? [flags] : [];
      });
    const synced = Wal.open(dir).wal;
    await synced.append(1, record('r1'));
    assert.deepEqual(segmentFlags().map((f) => (f & fs.constants.O_DSYNC) !== 0), [true]);
    synced.close();
    const unsafe = Wal.open(dir, undefined, false);
    await unsafe.wal.append(2, record('r2'));
    assert.deepEqual(segmentFlags().map((f) => (f & fs.constants.O_DSYNC) !== 0), [false]);
    unsafe.wal.close();
    const reopened = Wal.open(dir);
    assert.deepEqual(texts(reopened.records), ['r1', 'r2']);
    reopened.wal.close();
  });

  it('zero-fills 4 MiB ahead of a record that needs room, inline or on the pool, and the records land in the fill', async () => {
    const { wal } = Wal.open(dir);
    const file = path.join(dir, '0000000000000000.log');
    await wal.append(1, record('first'), true);
    const first = WAL_HEADER_BYTES + 'first'.length;
    assert.equal(fs.statSync(file).size, first + 4 * 1024 * 1024);
    await wal.append(2, record('second'));
    wal.close();
    const bytes = fs.readFileSync(file);
    assert.equal(bytes.length, first + 4 * 1024 * 1024, 'the second record fits in the fill');
    const end = first + WAL_HEADER_BYTES + 'second'.length;
    assert.ok(bytes.subarray(end).every((b) => b === 0), 'zeros after the records');
    assert.deepEqual(texts(Wal.open(dir).records), ['first', 'second']);
  });

  /** Three records of 200 bytes at [0, 216), [216, 432), [432, 648): the third crosses the sector boundary at 512. */
  async function threeRecords(): Promise<{ file: string; bytes: Buffer }> {
    const { wal } = Wal.open(dir);
    for (let seq = 1; seq <= 3; seq++) await wal.append(seq, record(`record ${seq}`.padEnd(200, '.')));
    wal.close();
    const file = path.join(dir, '0000000000000000.log');
    return { file, bytes: fs.readFileSync(file) };
  }
  const payloads = (records: { payload: Buffer }[]) => texts(records).map((t) => t.replace(/\.+$/, ''));

  it('drops a record torn by a crash (a sector of it still zeros), and the next append overwrites it', async () => {
    const { file, bytes } = await threeRecords();
    bytes.fill(0, 512, 648); // the write reached the first sector only
    fs.writeFileSync(file, bytes);
    const reopened = Wal.open(dir);
    assert.deepEqual(payloads(reopened.records), ['record 1', 'record 2']);
    assert.deepEqual(reopened.repaired, [{ file, offset: 432 }]);
    await reopened.wal.append(3, record('again 3'));
    reopened.wal.close();
    const again = Wal.open(dir);
    assert.deepEqual(payloads(again.records), ['record 1', 'record 2', 'again 3']);
    assert.deepEqual(again.repaired, []);
    again.wal.close();
  });

  it('refuses a damaged record (etcd: walpb: crc mismatch): in the middle of the log, or one that cannot be torn', async () => {
    const { file, bytes } = await threeRecords();
    const flip = (at: number): void => {
      const copy = Buffer.from(bytes);
      copy[at] = copy[at]! ^ 0x10;
      fs.writeFileSync(file, copy);
    };
    flip(216 + 100); // record 2: record 3 follows it
    assert.throws(() => Wal.open(dir), { message: 'walpb: crc mismatch', offset: 216 });
    flip(100); // record 1's payload
    assert.throws(() => Wal.open(dir), { message: 'walpb: crc mismatch', offset: 0 });
    // The last record, within one sector (a sector is written whole or not at all).
    fs.writeFileSync(file, bytes);
    const { wal: more } = Wal.open(dir);
    await more.append(4, record('four')); // at [648, 668), inside sector 1
    more.close();
    const withFour = fs.readFileSync(file);
    withFour[648 + WAL_HEADER_BYTES] = withFour[648 + WAL_HEADER_BYTES]! ^ 0x10;
    fs.writeFileSync(file, withFour);
    assert.throws(() => Wal.open(dir), { message: 'walpb: crc mismatch', offset: 648 });
  });

  it('takes a bad last record over several sectors without a zero piece as torn (a reused segment\'s old bytes)', async () => {
    const { file, bytes } = await threeRecords();
    bytes.fill(0xaa, 512, 648);
    fs.writeFileSync(file, bytes);
    const reopened = Wal.open(dir);
    assert.deepEqual(payloads(reopened.records), ['record 1', 'record 2']);
    assert.deepEqual(reopened.repaired, [{ file, offset: 432 }]);
    reopened.wal.close();
  });

  it('rotates into new segments, reuses released ones, and reads records back in sequence order', async () => {
    const size = 3 * (WAL_HEADER_BYTES + 4); // three 4-byte records per segment
    const { wal } = Wal.open(dir, size);
    for (let seq = 1; seq <= 7; seq++) await wal.append(seq, record(`r${String(seq).padStart(3, '0')}`));
    assert.equal(fs.readdirSync(dir).length, 3, '7 records need three segments');
    wal.release(6); // segments 0 and 1 hold 1–6
    for (let seq = 8; seq <= 12; seq++) await wal.append(seq, record(`r${String(seq).padStart(3, '0')}`));
    wal.close();
    assert.equal(fs.readdirSync(dir).length, 3, 'released segments were reused, none created');

    const { records } = Wal.open(dir, size);
    // Segment 0 holds 10–12 now; segment 1's 4–6 are older records than anything logged since.
    assert.deepEqual(records.map((r) => r.seq), [4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it('keeps every acknowledged record above the released mark through SIGKILLs, across rotations and reused segments', async () => {
    // The released mark stands for LMDB's applied and flushed `walSeq`: it is on disk before
    // `release` is called, as in Backend. Segments of 32 KiB rotate every few dozen records.
    const payload = (seq: number): string => `seq ${seq} ` + 'x'.repeat((seq * 7919) % 3000);
    const walUrl = new URL('../../src/mvcc/wal.ts', import.meta.url).href;
    const walDir = path.join(dir, 'wal');
    const mark = path.join(dir, 'mark');
    const script = `
      import fs from 'node:fs';
      import { Wal, WAL_HEADER_BYTES } from ${JSON.stringify(walUrl)};
      const payload = ${payload.toString()};
      const record = ${record.toString()};
      const { wal, records } = Wal.open(${JSON.stringify(walDir)}, 32 * 1024);
      let seq = records.at(-1)?.seq ?? 0;
      for (;;) {
        seq++;
        await wal.append(seq, record(payload(seq)), seq % 3 !== 0);
        process.stdout.write(seq + '\\n');
        if (seq % 20 === 0) {
          fs.writeFileSync(${JSON.stringify(mark)} + '.tmp', String(seq - 10), { flush: true });
          fs.renameSync(${JSON.stringify(mark)} + '.tmp', ${JSON.stringify(mark)});
          wal.release(seq - 10);
        }
      }
    `;
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise((done) => child.once('exit', done));
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      await Promise.race([new Promise((done) => child.stdout.once('data', done)), exited]); // appending, or failed
      await new Promise((done) => setTimeout(done, 200 + round * 150));
      child.kill('SIGKILL');
      await exited;
      assert.equal(err, '');

      const acked = Number(out.slice(0, out.lastIndexOf('\n')).split('\n').at(-1)); // the last whole line
      const released = fs.existsSync(mark) ? Number(fs.readFileSync(mark, 'utf8')) : 0;
      assert.ok(Number.isInteger(acked) && acked > released, `acknowledged up to ${acked}, released up to ${released}`);
      const { wal, records } = Wal.open(walDir, 32 * 1024);
      wal.close();
      const bySeq = new Map(records.map((r) => [r.seq, r.payload.toString()]));
      for (let seq = released + 1; seq <= acked; seq++) assert.equal(bySeq.get(seq), payload(seq), `record ${seq} (released up to ${released}, acknowledged up to ${acked})`);
    }
    const segments = fs.readdirSync(walDir).length;
    assert.ok(segments >= 3, `the log rotated (${segments} segments)`);
  });
});

describe('Backend with its write-ahead log', () => {
  it('reads see queued writes over LMDB, deletes included, in key order', async () => {
    const first = Backend.open(dir);
    for (const k of ['a', 'c', 'e']) first.put('key', Buffer.from(k), Buffer.from(`${k}1`));
    await first.close(); // in LMDB now

    const backend = Backend.open(dir);
    backend.put('key', Buffer.from('b'), Buffer.from('b1'));
    backend.put('key', Buffer.from('c'), Buffer.from('c2'));
    backend.remove('key', Buffer.from('e'));
    backend.put('key', Buffer.from('f'), Buffer.from('f1'));
    const read = () => [...backend.range('key')].map(({ key, value }) => `${key.toString()}=${value.toString()}`);
    assert.deepEqual(read(), ['a=a1', 'b=b1', 'c=c2', 'f=f1'], 'before the log append');
    // Scanned in place: the same entries, LMDB's and queued ones alike.
    const scanned: string[] = [];
    let key = '';
    backend.scanInPlace(
      'key',
      (bytes, start, end) => (key = bytes.toString('latin1', start, end)),
      (value) => scanned.push(`${key}=${value.toString('latin1', 0, value.length)}`),
    );
    assert.deepEqual(scanned, ['a=a1', 'b=b1', 'c=c2', 'f=f1']);
    assert.equal(backend.get('key', Buffer.from('e')), undefined);
    assert.deepEqual([...backend.range('key', Buffer.from('b'), Buffer.from('f'))].map(({ key }) => key.toString()), ['b', 'c']);
    await backend.durable();
    assert.deepEqual(read(), ['a=a1', 'b=b1', 'c=c2', 'f=f1'], 'logged, maybe not in LMDB');
    await backend.close();
    const reopened = Backend.open(dir);
    assert.deepEqual([...reopened.range('key')].map(({ key }) => key.toString()), ['a', 'b', 'c', 'f'], 'in LMDB after close');
    await reopened.close();
  });

  it('opens a database file that ends before LMDB\'s last page because its final pages are free', async () => {
    // Revision records appended while the oldest are removed (a compaction), one LMDB commit a
    // round: the last page LMDB allocates can be freed in its own commit and never written.
    const first = Backend.open(dir);
    let rev = 0;
    let compacted = 0;
    const revKey = (n: number) => Buffer.from(String(n).padStart(10, '0'));
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 50; i++) first.put('key', revKey(++rev), Buffer.alloc(100 + ((i * 37 + round * 11) % 900), round));
      for (let i = 0; i < 40; i++) first.remove('key', revKey(++compacted));
      await first.forceCommit();
    }
    await first.close();
    const dbDir = path.join(dir, 'member', 'db');
    const env = open({ path: dbDir, maxDbs: 16, pageSize: 4096, readOnly: true });
    const { lastPageNumber } = env.getStats() as { lastPageNumber: number };
    await env.close();
    assert.ok(fs.statSync(path.join(dbDir, 'data.mdb')).size < (lastPageNumber + 1) * 4096, 'the file ends before the last page');

    const reopened = Backend.open(dir);
    const keys = [...reopened.range('key')].map(({ key }) => Number(key.toString()));
    assert.deepEqual(keys, Array.from({ length: 20 }, (_, i) => 81 + i));
    await reopened.close();
  });

  it('a write to an idle log is appended within its tick; right after an append, writes of one check phase share a record', async () => {
    const backend = Backend.open(dir);
    let appends = 0;
    backend.onWalFsyncDuration = () => appends++;
    backend.put('key', Buffer.from('first'), Buffer.from('1'));
    await backend.durable(); // the first record also zero-fills ahead
    await new Promise((done) => setTimeout(done, 20)); // the log has been idle

    // Scheduled before the write, so it runs before a check-phase append would.
    let durableAtCheck = false;
    let durable = false;
    const probe = new Promise<void>((done) => setImmediate(() => { durableAtCheck = durable; done(); }));
    backend.put('key', Buffer.from('idle'), Buffer.from('1'));
    void backend.durable().then(() => (durable = true));
    await probe;
    assert.equal(durableAtCheck, true, 'appended before the check phase');
    assert.equal(appends, 2);

    // An append just ended: writes queued by two callbacks of one check phase share one record.
    const both = await new Promise<Promise<void>[]>((done) => {
      const waits: Promise<void>[] = [];
      setImmediate(() => {
        backend.put('key', Buffer.from('a'), Buffer.from('1'));
        waits.push(backend.durable());
      });
      setImmediate(() => {
        backend.put('key', Buffer.from('b'), Buffer.from('1'));
        waits.push(backend.durable());
        done(waits);
      });
    });
    await Promise.all(both);
    assert.equal(appends, 3, 'one record for both writes');
    await backend.close();
  });

  it('a snapshot read waits for the writes queued before it, not for a writer that never stops, and sees none of the later ones', async () => {
    const backend = Backend.open(dir);
    backend.put('key', Buffer.from('before'), Buffer.from('copy'));
    let writing = true;
    let n = 0;
    const writer = (async () => {
      const deadline = Date.now() + 10_000;
      while (writing && Date.now() < deadline) {
        backend.put('key', Buffer.from(`w${n++ % 100}`), Buffer.alloc(100));
        await backend.durable();
      }
      return writing;
    })();
    const [first, second] = await backend.readSnapshot(async (read) => {
      const once = () => [...read('key')].map(({ key, value }) => `${key}=${value.length}`);
      const a = once();
      // Writes go on while the snapshot is held; a second read of it sees none of them.
      const before = n;
      while (n < before + 5) await new Promise((r) => setTimeout(r, 5));
      return [a, once()];
    });
    writing = false;
    assert.equal(await writer, false, 'the snapshot ended while the writer was still writing');
    assert.ok(first.includes('before=4'), first.join());
    assert.deepEqual(second, first);
    await backend.close();
  });

  it('a defragmentation waits for a running snapshot read, which goes on reading the old file', async () => {
    const backend = Backend.open(dir);
    for (let i = 0; i < 200; i++) backend.put('key', Buffer.from(`k${String(i).padStart(3, '0')}`), Buffer.alloc(1000, i));
    await backend.durable();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let defragged = false;
    const snapshot = backend.readSnapshot(async (read) => {
      const before = [...read('key')].length;
      await held;
      // The defragmentation has copied the file by now and waits to swap it.
      return [before, [...read('key')].map(({ value }) => value[0])] as const;
    });
    await new Promise((r) => setTimeout(r, 10));
    const defrag = backend.defragment().then(() => (defragged = true));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(defragged, false, 'the defragmentation swapped the file under a running snapshot');
    release();
    const [before, firstBytes] = await snapshot;
    await defrag;
    assert.equal(before, 200);
    assert.deepEqual(firstBytes, Array.from({ length: 200 }, (_, i) => i));
    assert.equal([...backend.range('key')].length, 200);
    await backend.close();
  });

  it('removes the copy a defragmentation killed midway left, and says so', async () => {
    await Backend.open(dir).close();
    const member = path.join(dir, 'member');
    fs.writeFileSync(path.join(member, 'db.defrag.mdb'), Buffer.alloc(8192));
    fs.mkdirSync(path.join(member, 'db.defrag.mdb.copy'));
    fs.writeFileSync(path.join(member, 'db.defrag.mdb.copy', 'data.mdb'), Buffer.alloc(8192));
    const backend = Backend.open(dir);
    assert.deepEqual(backend.orphanedDefrag, ['db.defrag.mdb', 'db.defrag.mdb.copy']);
    assert.deepEqual(fs.readdirSync(member).sort(), ['db', 'wal']);
    await backend.close();
    const again = Backend.open(dir);
    assert.deepEqual(again.orphanedDefrag, []);
    await again.close();
  });

  it('refuses to open when a logged record LMDB lacks is missing', async () => {
    const { wal } = Wal.open(path.join(dir, 'member', 'wal'));
    await wal.append(2, record('any')); // record 1, which LMDB lacks too, is nowhere
    wal.close();
    assert.throws(() => Backend.open(dir), /wal: record 1 is missing \(next found: 2\); LMDB holds up to 0/);
  });

  it('a write acknowledged by durable() survives a crash before LMDB has it', async () => {
    const backendUrl = new URL('../../src/mvcc/backend.ts', import.meta.url).href;
    const script = `
      import { Backend } from ${JSON.stringify(backendUrl)};
      const b = Backend.open(${JSON.stringify(dir)}, { batchIntervalMs: 3_600_000 });
      b.put('key', Buffer.from('k'), Buffer.from('v'));
      b.putMeta('m', 7);
      await b.durable();
      process.kill(process.pid, 'SIGKILL');
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.signal, 'SIGKILL', child.stderr);

    // LMDB alone lacks the write: only the log has it.
    const env = open({ path: path.join(dir, 'member', 'db'), maxDbs: 16, readOnly: true });
    // (read-only, a database LMDB never created opens as undefined)
    const keyDb = env.openDB<Buffer, Buffer>({ name: 'key', keyEncoding: 'binary', encoding: 'binary' }) as ReturnType<typeof env.openDB> | undefined;
    assert.equal(keyDb?.getBinary(Buffer.from('k')), undefined);
    await env.close();

    const backend = Backend.open(dir);
    assert.equal(backend.get('key', Buffer.from('k'))?.toString(), 'v');
    assert.equal(backend.getMeta('m'), '7');
    await backend.close();
    const again = Backend.open(dir);
    assert.equal(again.get('key', Buffer.from('k'))?.toString(), 'v', 'applied to LMDB and still there');
    await again.close();
  });
});
