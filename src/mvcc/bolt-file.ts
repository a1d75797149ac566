/**
 * Writes and reads database files in bbolt's format (go.etcd.io/bbolt 1.3, what etcd 3.4 stores
 * its backend in), so that a snapshot of etcd-ts is an etcd snapshot (`etcdctl snapshot status`
 * reads it and `etcdctl snapshot restore` makes an etcd data dir of it) and etcd-ts can start
 * from a data dir `snapshot restore` made. No JS library reads or writes bbolt.
 *
 * The file is produced front to back, with 4 KiB pages: two meta pages (0, 1), an empty
 * freelist (2), then each bucket's B+tree (leaves in key order, then the branch levels above
 * them), then the root bucket's tree, whose leaf entries are the buckets (bucketLeafFlag, value
 * = the bucket header: root page id, sequence 0). The metas name the root's page and the file's
 * size, so a first pass lays the trees out without writing them, and a second writes every page
 * in file order: the bytes can be sent as they are made, as etcd sends its file. Every bucket gets a page of its own (no
 * inline buckets) and every page id below the high-water mark is reachable, which is what
 * bbolt's `Tx.Check` (run by `snapshot status`) asks. Integers are little-endian, as bbolt
 * writes them on amd64 and arm64.
 */
import fsSync from 'node:fs';

const PAGE_SIZE = 4096;
const PAGE_HEADER = 16;
const ELEMENT = 16;
const BRANCH_PAGE = 0x01;
const LEAF_PAGE = 0x02;
const META_PAGE = 0x04;
const FREELIST_PAGE = 0x10;
const BUCKET_LEAF = 0x01;
const MAGIC = 0xed0cdaed;
const VERSION = 2;
/** How long a pass over the entries runs before it lets other work of the process run, in ms. */
const YIELD_EVERY_MS = 5;
/** Page ids 0 and 1 are the metas, 2 the freelist; nodes start at 3. */
const FIRST_NODE_PAGE = 3;

/** One bucket to write: its name and its entries, in ascending key order. */
export interface BoltBucket {
  name: Buffer;
  entries: Iterable<readonly [key: Buffer, value: Buffer]>;
}

/** A written node: its first key and page id (what the branch above it holds). */
interface NodeRef {
  key: Buffer;
  pgid: bigint;
}

/** A node's element: a leaf entry (`value`, `flags`) or a branch entry (`child`). */
interface Element {
  key: Buffer;
  value?: Buffer;
  flags?: number;
  child?: bigint;
}

/** FNV-1a, 64 bits (Go's hash/fnv New64a), as bbolt checksums its meta pages. */
function fnv64a(bytes: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h;
}

/**
 * Hands out pages at increasing ids and gives each written node to `emit` in that order; with no
 * `emit`, only counts them (the layout pass).
 */
class PageWriter {
  next = BigInt(FIRST_NODE_PAGE);
  constructor(private readonly emit?: (page: Buffer) => Promise<void>) {}

  /** Writes one node (leaf or branch) on as many pages as it needs; returns its page id. */
  async node(branch: boolean, elements: readonly Element[]): Promise<bigint> {
    const data = elements.reduce((n, e) => n + e.key.length + (e.value?.length ?? 0), 0);
    const size = PAGE_HEADER + ELEMENT * elements.length + data;
    const pages = Math.max(1, Math.ceil(size / PAGE_SIZE));
    const pgid = this.next;
    this.next += BigInt(pages);
    if (this.emit === undefined) return pgid;
    const buf = Buffer.alloc(pages * PAGE_SIZE);
    buf.writeBigUInt64LE(pgid, 0);
    buf.writeUInt16LE(branch ? BRANCH_PAGE : LEAF_PAGE, 8);
    buf.writeUInt16LE(elements.length, 10);
    buf.writeUInt32LE(pages - 1, 12);
    let at = PAGE_HEADER + ELEMENT * elements.length;
    elements.forEach((e, i) => {
      const el = PAGE_HEADER + ELEMENT * i;
      if (branch) {
        buf.writeUInt32LE(at - el, el);
        buf.writeUInt32LE(e.key.length, el + 4);
        buf.writeBigUInt64LE(e.child!, el + 8);
      } else {
        buf.writeUInt32LE(e.flags ?? 0, el);
        buf.writeUInt32LE(at - el, el + 4);
        buf.writeUInt32LE(e.key.length, el + 8);
        buf.writeUInt32LE(e.value!.length, el + 12);
      }
      at += e.key.copy(buf, at);
      if (!branch) at += e.value!.copy(buf, at);
    });
    await this.emit(buf);
    return pgid;
  }

  /**
   * Writes a B+tree of `entries` (ascending keys) and returns its root page id: leaves filled
   * up to a page (an entry larger than a page gets a leaf of its own, on overflow pages), then
   * branch levels until one node is left. No entries: one empty leaf.
   */
  async tree(entries: BoltBucket['entries'], flags = 0): Promise<bigint> {
    let level: NodeRef[] = [];
    let batch: Element[] = [];
    let size = PAGE_HEADER;
    const flush = async (branch: boolean, into: NodeRef[]): Promise<void> => {
      into.push({ key: batch[0]?.key ?? Buffer.alloc(0), pgid: await this.node(branch, batch) });
      batch = [];
      size = PAGE_HEADER;
    };
    let since = performance.now();
    for (const [key, value] of entries) {
      // Let other work run between slices of a large file (the layout pass has no I/O to wait on).
      if (performance.now() - since > YIELD_EVERY_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const grow = ELEMENT + key.length + value.length;
      if (batch.length > 0 && size + grow > PAGE_SIZE) await flush(false, level);
      batch.push({ key, value, flags });
      size += grow;
    }
    if (batch.length > 0 || level.length === 0) await flush(false, level);
    while (level.length > 1) {
      const above: NodeRef[] = [];
      for (const ref of level) {
        const grow = ELEMENT + ref.key.length;
        if (batch.length > 0 && size + grow > PAGE_SIZE) await flush(true, above);
        batch.push({ key: ref.key, child: ref.pgid });
        size += grow;
      }
      await flush(true, above);
      level = above;
    }
    return level[0]!.pgid;
  }
}

/** A meta page (bbolt `meta`) for transaction `txid`. */
function metaPage(id: number, root: bigint, highWater: bigint, txid: bigint): Buffer {
  const buf = Buffer.alloc(PAGE_SIZE);
  buf.writeBigUInt64LE(BigInt(id), 0);
  buf.writeUInt16LE(META_PAGE, 8);
  const m = PAGE_HEADER;
  buf.writeUInt32LE(MAGIC, m);
  buf.writeUInt32LE(VERSION, m + 4);
  buf.writeUInt32LE(PAGE_SIZE, m + 8);
  buf.writeUInt32LE(0, m + 12);
  buf.writeBigUInt64LE(root, m + 16);
  buf.writeBigUInt64LE(0n, m + 24);
  buf.writeBigUInt64LE(2n, m + 32);
  buf.writeBigUInt64LE(highWater, m + 40);
  buf.writeBigUInt64LE(txid, m + 48);
  buf.writeBigUInt64LE(fnv64a(buf.subarray(m, m + 56)), m + 56);
  return buf;
}

/** Lays out or writes every bucket's tree, then the root bucket's; returns the root's page id. */
async function trees(pages: PageWriter, buckets: readonly BoltBucket[]): Promise<bigint> {
  const roots: (readonly [Buffer, Buffer])[] = [];
  for (const b of buckets) {
    const header = Buffer.alloc(16);
    header.writeBigUInt64LE(await pages.tree(b.entries), 0);
    roots.push([b.name, header]);
  }
  return pages.tree(roots, BUCKET_LEAF);
}

/** Where `writeBoltImage` puts the file: its size first, then its bytes in order. */
export interface BoltSink {
  /** Told the file's size in bytes (a multiple of the page size) before any byte. */
  size(bytes: number): void;
  /** Takes the next bytes of the file; the next call waits until it settles. */
  write(bytes: Buffer): Promise<void>;
}

/**
 * Writes `buckets()` (ascending by name, each with its entries in ascending key order) as a
 * bbolt database file to `out`, front to back. `buckets` is called twice, for the layout pass and
 * for the writing pass, and must give the same entries both times. Rejects with what `out`
 * rejects with, or a bug's Error when the passes differ.
 */
export async function writeBoltImage(buckets: () => readonly BoltBucket[], out: BoltSink): Promise<void> {
  const layout = new PageWriter();
  const root = await trees(layout, buckets());
  out.size(Number(layout.next) * PAGE_SIZE);
  await out.write(metaPage(0, root, layout.next, 0n));
  await out.write(metaPage(1, root, layout.next, 1n));
  const freelist = Buffer.alloc(PAGE_SIZE);
  freelist.writeBigUInt64LE(2n, 0);
  freelist.writeUInt16LE(FREELIST_PAGE, 8);
  await out.write(freelist);
  const pages = new PageWriter((page) => out.write(page));
  if ((await trees(pages, buckets())) !== root || pages.next !== layout.next) throw new Error('bbolt: the entries changed between the layout and the writing pass');
}

/** Reads pages of a bbolt file on demand. */
class PageReader {
  readonly fd: number;
  pageSize = PAGE_SIZE;
  constructor(path: string) {
    this.fd = fsSync.openSync(path, 'r');
  }

  /** Page `id` with its overflow pages. */
  page(id: bigint): Buffer {
    const head = Buffer.alloc(PAGE_HEADER);
    fsSync.readSync(this.fd, head, 0, PAGE_HEADER, Number(id) * this.pageSize);
    const size = (head.readUInt32LE(12) + 1) * this.pageSize;
    const buf = Buffer.alloc(size);
    fsSync.readSync(this.fd, buf, 0, size, Number(id) * this.pageSize);
    return buf;
  }

  close(): void {
    fsSync.closeSync(this.fd);
  }
}

/** The entries of the B+tree whose root is the node at `offset` of `page` (an inline bucket's page, or a whole page), in key order. */
function* walk(reader: PageReader, page: Buffer, offset = 0): Generator<{ key: Buffer; value: Buffer; flags: number }> {
  const flags = page.readUInt16LE(offset + 8);
  const count = page.readUInt16LE(offset + 10);
  for (let i = 0; i < count; i++) {
    const el = offset + PAGE_HEADER + ELEMENT * i;
    if (flags & BRANCH_PAGE) {
      yield* walk(reader, reader.page(page.readBigUInt64LE(el + 8)));
    } else if (flags & LEAF_PAGE) {
      const pos = el + page.readUInt32LE(el + 4);
      const ksize = page.readUInt32LE(el + 8);
      const vsize = page.readUInt32LE(el + 12);
      yield { flags: page.readUInt32LE(el), key: page.subarray(pos, pos + ksize), value: page.subarray(pos + ksize, pos + ksize + vsize) };
    } else {
      throw new Error(`bbolt: page ${page.readBigUInt64LE(offset)} is neither a branch nor a leaf`);
    }
  }
}

/**
 * Every entry of every top-level bucket of the bbolt database `path`, buckets in name order and
 * entries in key order (nested buckets are skipped: etcd has none). Pages are read from the file
 * as the entries are taken; an entry's `key` and `value` are views of the page read for it. The
 * file is open until the iteration ends. Throws, at the first entry
 * taken, when the file is not a valid bbolt database (no meta page with bbolt's magic, version
 * and checksum).
 */
export function* boltEntries(path: string): Generator<{ bucket: Buffer; key: Buffer; value: Buffer }> {
  const reader = new PageReader(path);
  try {
    let meta: { root: bigint; txid: bigint; pageSize: number } | undefined;
    for (const offset of [0, undefined]) {
      // meta 1 sits one page in, at the page size meta 0 gave (or the default).
      const at = offset ?? meta?.pageSize ?? PAGE_SIZE;
      const buf = Buffer.alloc(PAGE_HEADER + 64);
      fsSync.readSync(reader.fd, buf, 0, buf.length, at);
      const m = PAGE_HEADER;
      const valid = buf.readUInt32LE(m) === MAGIC && buf.readUInt32LE(m + 4) === VERSION && fnv64a(buf.subarray(m, m + 56)) === buf.readBigUInt64LE(m + 56);
      const txid = buf.readBigUInt64LE(m + 48);
      if (valid && (!meta || txid > meta.txid)) meta = { root: buf.readBigUInt64LE(m + 16), txid, pageSize: buf.readUInt32LE(m + 8) };
    }
    if (!meta) throw new Error(`bbolt: ${path} is not a bbolt database`);
    reader.pageSize = meta.pageSize;
    for (const bucket of walk(reader, reader.page(meta.root))) {
      if (!(bucket.flags & BUCKET_LEAF)) continue;
      const root = bucket.value.readBigUInt64LE(0);
      // root 0: an inline bucket, whose page follows its 16-byte header in the value.
      const entries = root === 0n ? walk(reader, bucket.value, 16) : walk(reader, reader.page(root));
      for (const e of entries) if (!(e.flags & BUCKET_LEAF)) yield { bucket: bucket.key, key: e.key, value: e.value };
    }
  } finally {
    reader.close();
  }
}
