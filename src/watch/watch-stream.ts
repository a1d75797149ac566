/**
 * One watch stream: many watchers over one bidirectional gRPC stream (etcd
 * `etcdserver/api/v3rpc/watch.go` `serverWatchStream`, with etcd `mvcc.watchStream`).
 *
 * Requests are handled synchronously in arrival order (etcd's `recvLoop`): create, cancel,
 * progress. Responses go through one bounded send queue (etcd's `watchStream.ch` plus
 * `ctrlStream`), drained into the transport while it accepts writes (etcd's `sendLoop`).
 *
 * Ordering rules:
 * - a `created` response is queued synchronously while the create request is handled, before
 *   the watcher can receive anything, so `created` responses follow request order and precede
 *   every event of their watcher;
 * - events of one watcher keep revision order; while they wait in the queue, later events of
 *   the same watcher may join the waiting response (whole revisions only), which turns a backlog
 *   into fewer, larger messages. A control response (created, canceled, progress) closes every
 *   waiting response to joins, so nothing queued after it can overtake it: a progress
 *   notification at R follows every queued event ≤ R (etcd issue #15220);
 * - a progress request (watch_id −1) is answered only when every watcher of the stream is
 *   synced; otherwise it is answered as soon as they are (etcd 3.5's deferred progress). A
 *   watcher started at a future revision S counts as synced only once the store reached S − 1:
 *   no progress notification below a watcher's start (etcd #20221).
 *
 * Backpressure: the queue holds at most `sendBufferLimit` responses (etcd `chanBufLen`) plus
 * one per watcher of the stream (see hasRoom), and SEND_BUFFER_BYTES of events (etcd has no
 * byte bound; its responses are smaller). When it is full, `sendEvents` refuses and the
 * watchable store makes the watcher a victim, which is later replayed from history: a slow
 * client costs bounded memory and never blocks writers or other streams.
 */
import { WatchCreateRequest_FilterType, type ResponseHeader, type WatchCreateRequest, type WatchRequest } from '../proto/gen/rpc.gen.js';
import { keyFromBytes } from '../mvcc/key.js';
import { marshalHeaderField, pushInt64, pushVarint } from '../proto/wire.js';
import type { WatchableStore } from './watchable-store.js';
import type { Watcher, WatchEvent, WatchId, WatcherSink } from './watcher.js';

/** Responses the send queue holds, besides one per watcher, before watchers become victims (etcd `chanBufLen`). @default 128 */
export const SEND_BUFFER_LIMIT = 128;
/**
 * Bytes of events the send queue holds before watchers become victims: with the response
 * count above, this bounds the memory a client that stops reading costs the server.
 */
export const SEND_BUFFER_BYTES = 4 * 1024 * 1024;
/** A waiting events response takes no more joins once it holds this many bytes of events. */
export const MERGE_LIMIT_BYTES = 64 * 1024;
/** An empty send queue keeps its array for reuse up to this many slots. */
const QUEUE_KEEP_SLOTS = 4096;
/** The watch ID meaning "choose one" (etcd `clientv3.AutoWatchID`). */
const AUTO_WATCH_ID = 0n;
/** The watch ID of a failed create and of a stream-wide progress response (etcd `InvalidWatchID`). */
const INVALID_WATCH_ID = -1;

/** A requested watch ID (an int64) as a `WatchId`: a number when it is one exactly. */
function watchId(id: bigint): WatchId {
  return id >= -MAX_SAFE_ID && id <= MAX_SAFE_ID ? Number(id) : id;
}
const MAX_SAFE_ID = BigInt(Number.MAX_SAFE_INTEGER);

/** The key of a watch ID in `WatchStream.watchers`. */
function slot(id: WatchId): number | string {
  return typeof id === 'number' ? id : id.toString();
}

/** etcd `mvcc.ErrEmptyWatcherRange`. */
export const ERR_EMPTY_WATCHER_RANGE = 'mvcc: watcher range is empty';
/** etcd `mvcc.ErrWatcherDuplicateID`. */
export const ERR_WATCHER_DUPLICATE_ID = 'mvcc: duplicate watch ID provided on the WatchStream';

/** Where encoded WatchResponse bytes go (a gRPC server stream). */
export interface WatchStreamTransport {
  /**
   * Writes one marshalled WatchResponse, given as `head` then `parts` to be sent one after the
   * other (`length` bytes in all), so that the transport copies them once, into its own framing.
   * The buffers may be shared with other responses and must not be changed. The transport may
   * hold the response until `flush`. Returns false when the transport's buffer is full: the
   * stream then waits for `WatchStream.drained()` before writing more.
   */
  write(head: Buffer, parts: readonly Buffer[], length: number): boolean;
  /** Sends whatever `write` holds back; called after every pass over the send queue. */
  flush(): void;
}

/** Options of a watch stream. */
export interface WatchStreamOptions {
  /**
   * The marshalled `header` field of a response at revision `rev` (etcd `newResponseHeader`; 0
   * stays 0). Streams of one server share one `headerFields(header)`, so each revision's header
   * is encoded once for all of them.
   */
  headerField(rev: number): Buffer;
  /** Responses of fragmenting watchers this large are split (etcd: --max-request-bytes + 512 KiB). */
  fragmentBytes: number;
  /**
   * Interval of periodic progress notifications in ms; 0 = none. Each stream adds its own jitter
   * of up to a tenth of it (etcd `GetProgressReportInterval`), so that streams opened together
   * do not all notify at once.
   */
  progressIntervalMs: number;
  /** Queue capacity in responses. @default SEND_BUFFER_LIMIT */
  sendBufferLimit?: number;
  /**
   * Whether the client may watch [key, rangeEnd) (etcd `isWatchPermitted`; range_end as in the
   * request): undefined when it may, else the cancel reason. @default every watch is permitted
   */
  refusal?(key: Buffer, rangeEnd: Buffer): string | undefined;
}

/** Bits of the boolean fields of a WatchResponse, for marshalResponse. */
const CREATED = 1;
const CANCELED = 2;
const FRAGMENT = 4;

/**
 * Marshals a WatchResponse up to its events by hand, as ts-proto would (fields in order, zero
 * values left out): `headerField` (the marshalled `header` field), then watch_id, created,
 * canceled (`bits`), compact_revision, cancel_reason, fragment. An events response appends its
 * events' entries; a control response is complete as returned. Building the message object and
 * its bigints through ts-proto cost more than the rest of a create request.
 */
function marshalResponse(headerField: Buffer, watchId: WatchId, bits: number, compactRev = 0, reason = ''): Buffer {
  const tail: number[] = [];
  if (typeof watchId === 'bigint') {
    tail.push(2 << 3);
    pushInt64(tail, watchId);
  } else if (watchId !== 0) {
    tail.push(2 << 3);
    pushVarint(tail, watchId);
  }
  if (bits & CREATED) tail.push(3 << 3, 1);
  if (bits & CANCELED) tail.push(4 << 3, 1);
  if (compactRev !== 0) {
    tail.push(5 << 3);
    pushVarint(tail, compactRev);
  }
  if (reason !== '') {
    const r = Buffer.from(reason);
    tail.push((6 << 3) | 2);
    pushVarint(tail, r.length);
    for (const b of r) tail.push(b);
  }
  if (bits & FRAGMENT) tail.push(7 << 3, 1);
  if (tail.length === 0) return headerField;
  const out = Buffer.allocUnsafe(headerField.length + tail.length);
  headerField.copy(out, 0);
  out.set(tail, headerField.length);
  return out;
}

/**
 * The fields of an events response before its events: `headerField`, watch_id, and the fragment
 * flag when `fragment` (what marshalResponse writes for those fields), in one buffer written
 * directly: this runs once per watcher per revision.
 */
function marshalEventsPrefix(headerField: Buffer, watchId: WatchId, fragment: boolean): Buffer {
  // Negative IDs take ten varint bytes; IDs beyond 2^53 are bigints.
  if (typeof watchId === 'bigint' || watchId < 0) return marshalResponse(headerField, watchId, fragment ? FRAGMENT : 0);
  let idBytes = 0;
  if (watchId !== 0) for (let v = watchId; ; v = Math.floor(v / 128)) if ((idBytes++, v < 128)) break;
  const out = Buffer.allocUnsafe(headerField.length + (watchId !== 0 ? 1 + idBytes : 0) + (fragment ? 2 : 0));
  let at = headerField.copy(out, 0);
  if (watchId !== 0) {
    out[at++] = 2 << 3;
    let v = watchId;
    for (; v >= 128; v = Math.floor(v / 128)) out[at++] = (v % 128) | 128;
    out[at++] = v;
  }
  if (fragment) {
    out[at++] = 7 << 3;
    out[at] = 1;
  }
  return out;
}

/** A queued events response of one watcher. */
interface EventsItem {
  readonly w: Watcher;
  /** `WatchResponse.events` entries, in revision order. */
  readonly chunks: Buffer[];
  /** Total bytes of `chunks`. */
  bytes: number;
  /** Header revision: the newest of the joined responses'. */
  headerRev: number;
  /** The stream's `joinEpoch` when it was queued: later events may join it only within that epoch. */
  readonly epoch: number;
}

/** A marshalled response as buffers to send one after the other (see WatchStreamTransport.write). */
interface ResponseParts {
  readonly head: Buffer;
  readonly parts: Buffer[];
  readonly length: number;
}

const NO_PARTS: readonly Buffer[] = [];

/**
 * A `headerField` option over `header` (which must build the same header for a revision every
 * time), keeping the last revision's bytes: streams sharing it encode each revision's header
 * once between them rather than once each (16 streams: 16 encodings per revision).
 */
export function headerFields(header: (rev: number) => ResponseHeader): (rev: number) => Buffer {
  let lastRev = -1;
  let lastBytes: Buffer = Buffer.alloc(0);
  return (rev) => {
    if (rev !== lastRev) {
      lastBytes = marshalHeaderField(header(rev));
      lastRev = rev;
    }
    return lastBytes;
  };
}

/** A queued response: pre-encoded control bytes or events. */
type QueueItem = Buffer | EventsItem;

export class WatchStream implements WatcherSink {
  private readonly store: WatchableStore;
  private readonly transport: WatchStreamTransport;
  private readonly opts: WatchStreamOptions;
  private readonly limit: number;
  /**
   * The stream's watchers by ID, canceled-by-compaction ones included until the client cancels
   * them; changed by create, cancel and close. A plain object rather than a Map: watch IDs are
   * mostly consecutive from 0 (automatic IDs), which V8 stores as array elements at 8 bytes a
   * watcher, against about 46 in a Map; sparse, negative or huge client-chosen IDs fall back to
   * V8's dictionary storage. An ID beyond 2^53 is a bigint (see `WatchId`), its key its decimal
   * text, which no number ID's key equals.
   */
  private watchers: Record<number | string, Watcher> = {};
  /** Number of entries in `watchers`. */
  private watcherCount = 0;
  /** Next automatic watch ID to try (etcd `watchStream.nextID`); changed by create. */
  private nextId = 0;
  /**
   * Send queue; `queue[head..tail)` are waiting. Changed by enqueue and pump, which reuse its
   * slots once it is empty rather than making a new array for every revision.
   */
  private queue: (QueueItem | undefined)[] = [];
  private head = 0;
  private tail = 0;
  /** Bytes of events and control responses in `queue[head..tail)`; changed by sendEvents, enqueue, pump. */
  private queuedBytes = 0;
  /**
   * Waiting events responses may take later events of their watcher (`Watcher.joinable`) while
   * their epoch is this one; a control response starts a new epoch, closing them all.
   */
  private joinEpoch = 0;
  /** False while the transport is full (until drained()). */
  private writable = true;
  /** True while a pump is scheduled. */
  private pumpScheduled = false;
  /** The scheduled pump (one function for the stream's life, not one per revision). */
  private readonly scheduledPump = (): void => {
    this.pumpScheduled = false;
    this.pump();
  };
  /** A progress request waits for every watcher to be synced. */
  private deferredProgress = false;
  /**
   * Progress-notify watchers that received events since the last tick (their tick is skipped);
   * created with the progress timer.
   */
  private sentSinceTick: Set<Watcher> | undefined;
  /**
   * Timer of periodic progress notifications, started by the stream's first progress_notify
   * watcher (etcd starts its ticker with the stream: the period is the same, the phase differs),
   * so that the many streams without one hold no timer.
   */
  private progressTimer: NodeJS.Timeout | undefined;
  /** Set by close(). */
  private closed = false;

  constructor(store: WatchableStore, transport: WatchStreamTransport, opts: WatchStreamOptions) {
    this.store = store;
    this.transport = transport;
    this.opts = opts;
    this.limit = opts.sendBufferLimit ?? SEND_BUFFER_LIMIT;
    store.streamOpened();
  }

  /** Number of watchers on this stream (compaction-canceled ones included). */
  get size(): number {
    return this.watcherCount;
  }

  /** Handles one WatchRequest (etcd `recvLoop`); an empty request is ignored. */
  handle(req: WatchRequest): void {
    if (this.closed) return;
    if (req.createRequest) this.create(req.createRequest);
    else if (req.cancelRequest) this.cancel(watchId(req.cancelRequest.watchId));
    else if (req.progressRequest) this.requestProgressAll();
  }

  /** Called by the transport when it accepts writes again. */
  drained(): void {
    this.writable = true;
    this.pump();
  }

  /** Cancels every watcher and drops the queue; the stream is unusable afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.store.streamClosed();
    this.store.cancelAfterNextRevision(this.recheckProgress);
    let dropped = 0;
    for (let i = this.head; i < this.tail; i++) {
      const item = this.queue[i];
      if (item !== undefined && !Buffer.isBuffer(item)) dropped += item.chunks.length;
    }
    this.store.reportEventsDropped(dropped);
    for (const w of Object.values(this.watchers)) this.store.cancel(w);
    this.watchers = {};
    this.watcherCount = 0;
    this.queue = [];
    this.head = 0;
    this.tail = 0;
    this.queuedBytes = 0;
    this.joinEpoch++;
    this.sentSinceTick = undefined;
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.progressTimer = undefined;
  }

  // ---- WatcherSink (called by the watchable store) ----

  sendEvents(w: Watcher, events: readonly WatchEvent[], headerRev: number): boolean {
    if (this.closed) {
      this.store.reportEventsDropped(events.length);
      return true;
    }
    let item = w.joinable as EventsItem | undefined;
    let i = 0;
    if (!item || item.epoch !== this.joinEpoch || item.bytes >= MERGE_LIMIT_BYTES) {
      if (!this.hasRoom()) return false;
      // The array starts as a literal of the first entry: an empty one would get a backing
      // store of 16 slots at its first push, for the one entry most responses carry.
      const first = events[i++]!.entry(w.prevKv, this.store.prevKv);
      item = { w, chunks: [first], bytes: first.length, headerRev, epoch: this.joinEpoch };
      this.queuedBytes += first.length;
      w.joinable = item;
      this.enqueue(item);
    }
    for (; i < events.length; i++) {
      const chunk = events[i]!.entry(w.prevKv, this.store.prevKv);
      item.chunks.push(chunk);
      item.bytes += chunk.length;
      this.queuedBytes += chunk.length;
    }
    item.headerRev = Math.max(item.headerRev, headerRev);
    if (w.progressNotify) this.sentSinceTick?.add(w);
    return true;
  }

  sendCompacted(w: Watcher, compactRev: number): boolean {
    if (this.closed) return true;
    if (!this.hasRoom()) return false;
    // etcd answers with the header of the (empty) revision 0 and no cancel reason.
    this.enqueueControl(0, w.id, CANCELED, compactRev);
    return true;
  }

  sendProgress(w: Watcher, rev: number): boolean {
    if (this.closed) return true;
    if (!this.hasRoom()) return false;
    this.enqueueControl(rev, w.id, 0);
    return true;
  }

  /**
   * Room for one more response: fewer than `limit` responses plus one per watcher of the
   * stream are waiting, and fewer than SEND_BUFFER_BYTES of events. etcd's channel of 128
   * responses is drained by its send goroutine while notify runs; here the queue drains only
   * after notify returns, so one revision seen by N watchers of a stream needs N slots at once:
   * without the per-watcher share, every watcher past the 128th would become a victim on every
   * revision and be replayed from history.
   */
  hasRoom(): boolean {
    return this.tail - this.head < this.limit + this.watcherCount && this.queuedBytes < SEND_BUFFER_BYTES;
  }

  watcherSettled(_w: Watcher): void {
    this.checkDeferredProgress();
  }

  // ---- requests ----

  /** etcd `recvLoop` for a create request, then `watchStream.Watch`. */
  private create(c: WatchCreateRequest): void {
    const key = c.key.length === 0 ? '\0' : keyFromBytes(c.key);
    let end: string | undefined;
    if (c.rangeEnd.length === 0) end = undefined;
    else if (c.rangeEnd.length === 1 && c.rangeEnd[0] === 0) end = '';
    else end = keyFromBytes(c.rangeEnd);
    const wsrev = this.store.rev;
    const refusal = this.opts.refusal?.(c.key.length === 0 ? Buffer.from([0]) : c.key, c.rangeEnd);
    if (refusal !== undefined) return this.refuse(wsrev, refusal);
    if (end !== undefined && end !== '' && key >= end) return this.refuse(wsrev, ERR_EMPTY_WATCHER_RANGE);
    let id: WatchId;
    if (c.watchId === AUTO_WATCH_ID) {
      while (this.watchers[this.nextId] !== undefined) this.nextId++;
      id = this.nextId++;
    } else {
      id = watchId(c.watchId);
      if (this.watchers[slot(id)] !== undefined) return this.refuse(wsrev, ERR_WATCHER_DUPLICATE_ID);
    }
    const startRev = c.startRevision === 0n ? wsrev + 1 : Number(c.startRevision);
    const w = this.store.watch(
      {
        id,
        key,
        end,
        startRev,
        noPut: c.filters.includes(WatchCreateRequest_FilterType.NOPUT),
        noDelete: c.filters.includes(WatchCreateRequest_FilterType.NODELETE),
        prevKv: c.prevKv,
        progressNotify: c.progressNotify,
        fragment: c.fragment,
      },
      this,
    );
    this.watchers[slot(id)] = w;
    this.watcherCount++;
    if (w.progressNotify && this.progressTimer === undefined && this.opts.progressIntervalMs > 0) {
      this.sentSinceTick = new Set();
      const interval = this.opts.progressIntervalMs;
      this.progressTimer = setInterval(() => this.progressTick(), interval + Math.floor(Math.random() * (interval / 10))).unref();
    }
    // Queued before the store can hand the watcher anything (everything here is synchronous).
    this.enqueueControl(wsrev, id, CREATED);
  }

  /** Answers a create request that made no watcher: created and canceled at once, with etcd's reason. */
  private refuse(wsrev: number, reason: string): void {
    this.enqueueControl(wsrev, INVALID_WATCH_ID, CREATED | CANCELED, 0, reason);
  }

  /** etcd `watchStream.Cancel`: an unknown ID is ignored, as etcd does. */
  private cancel(id: WatchId): void {
    const w = this.watchers[slot(id)];
    if (!w) return;
    this.store.cancel(w);
    delete this.watchers[slot(id)];
    this.watcherCount--;
    w.joinable = undefined;
    this.sentSinceTick?.delete(w);
    this.enqueueControl(this.store.rev, id, CANCELED);
    this.checkDeferredProgress();
  }

  /** A progress request: answered now if every watcher is synced, else once they are. */
  private requestProgressAll(): void {
    if (this.deferredProgress) return;
    this.deferredProgress = true;
    this.checkDeferredProgress();
  }

  /** Re-checks a deferred progress request once the store published another revision. */
  private readonly recheckProgress = (): void => this.checkDeferredProgress();

  private checkDeferredProgress(): void {
    if (!this.deferredProgress || this.closed) return;
    for (const w of Object.values(this.watchers)) {
      if (w.state === 'unsynced' || w.state === 'victim') return;
      // A watcher from a future revision: the answer would be below its start (etcd #20221).
      // It is clientv3's habit to hand a stream-wide notification to every watcher of the
      // stream, so the answer waits until the store reaches that start.
      if (w.state === 'synced' && !this.store.caughtUp(w)) {
        this.store.afterNextRevision(this.recheckProgress);
        return;
      }
    }
    this.deferredProgress = false;
    this.enqueueControl(this.store.rev, INVALID_WATCH_ID, 0);
  }

  /** Periodic progress (etcd `sendLoop`'s progressTicker): skipped for watchers that just got events. */
  private progressTick(): void {
    for (const w of Object.values(this.watchers)) {
      if (!w.progressNotify) continue;
      if (!this.sentSinceTick?.has(w)) this.store.progress(w);
      this.sentSinceTick?.delete(w);
    }
  }

  // ---- the send queue (etcd `sendLoop`) ----

  /** Queues a response without events (see marshalResponse for the fields) with the header at `rev`. */
  private enqueueControl(rev: number, watchId: WatchId, bits: number, compactRev = 0, reason = ''): void {
    this.joinEpoch++; // nothing queued later may overtake this response
    const bytes = marshalResponse(this.opts.headerField(rev), watchId, bits, compactRev, reason);
    this.queuedBytes += bytes.length;
    this.enqueue(bytes);
  }

  private enqueue(item: QueueItem): void {
    this.queue[this.tail++] = item;
    if (!this.pumpScheduled && this.writable) {
      this.pumpScheduled = true;
      // Deferred to the end of the current job, so that the events of every revision published
      // in one batch (one synchronous publish loop) or replayed in one sync pass can join; a
      // microtask rather than setImmediate, which waited for the rest of the event-loop
      // iteration (about 0.25 ms from notify to the write when idle, measured).
      queueMicrotask(this.scheduledPump);
    }
  }

  /** Writes queued responses while the transport accepts them. */
  private pump(): void {
    while (this.writable && !this.closed && this.head < this.tail) {
      const item = this.queue[this.head]!;
      this.queue[this.head++] = undefined;
      if (Buffer.isBuffer(item)) {
        this.queuedBytes -= item.length;
        if (!this.transport.write(item, NO_PARTS, item.length)) this.writable = false;
        continue;
      }
      if (item.w.joinable === item) item.w.joinable = undefined;
      this.queuedBytes -= item.bytes;
      if (!this.writeEvents(item)) this.writable = false;
      this.store.reportEventsSent(item.chunks.length);
    }
    this.transport.flush();
    if (this.head === this.tail) {
      // Empty: its slots are reused, unless a backlog made it large.
      if (this.queue.length > QUEUE_KEEP_SLOTS) this.queue = [];
      this.head = 0;
      this.tail = 0;
    } else if (this.head > 1024 && this.head * 2 > this.tail) {
      this.queue = this.queue.slice(this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
    }
  }

  /** The fields of an events response before its events (see marshalEventsPrefix). */
  private eventsPrefix(rev: number, watchId: WatchId, fragment: boolean): Buffer {
    return marshalEventsPrefix(this.opts.headerField(rev), watchId, fragment);
  }

  /**
   * Writes an events response, split into fragments when the watcher asked (etcd
   * `sendFragments`). False when a transport write returned false.
   */
  private writeEvents(item: EventsItem): boolean {
    const prefix = this.eventsPrefix(item.headerRev, item.w.id, false);
    if (!item.w.fragment || prefix.length + item.bytes < this.opts.fragmentBytes || item.chunks.length < 2) {
      return this.transport.write(prefix, item.chunks, prefix.length + item.bytes);
    }
    let ok = true;
    for (const r of this.fragments(item, prefix)) if (!this.transport.write(r.head, r.parts, r.length)) ok = false;
    return ok;
  }

  /** The fragments of an events response too large for one (`prefix`: its unfragmented prefix). */
  private fragments(item: EventsItem, prefix: Buffer): ResponseParts[] {
    const max = this.opts.fragmentBytes;
    const fragPrefix = this.eventsPrefix(item.headerRev, item.w.id, true);
    const out: ResponseParts[] = [];
    let cur: Buffer[] = [];
    let size = fragPrefix.length;
    for (const chunk of item.chunks) {
      if (cur.length > 0 && size + chunk.length >= max) {
        out.push({ head: fragPrefix, parts: cur, length: size });
        cur = [];
        size = fragPrefix.length;
      }
      cur.push(chunk);
      size += chunk.length;
    }
    // The last part of a split response carries no fragment flag.
    out.push({ head: prefix, parts: cur, length: size - fragPrefix.length + prefix.length });
    return out;
  }
}
