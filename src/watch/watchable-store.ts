/**
 * The watchable store (etcd `mvcc/watchable_store.go`): the MVCC store plus its watchers.
 *
 * Watchers live in one of three groups:
 * - **synced**: caught up with the store. `notify` runs once per durable revision (from
 *   `KVStore.onPublish`) and hands each of them the events of that revision that it watches.
 * - **unsynced**: behind (started from an old revision, or back from being a victim).
 *   `syncWatchers` replays their history from the backend and moves them to synced.
 * - **victims**: their stream's send buffer was full. etcd keeps the undelivered batch with
 *   the victim; we keep nothing but the watcher's next revision (`minRev`), and once its stream
 *   has room again (checked every 10 ms) it goes to unsynced and its events are replayed from
 *   history. Memory per slow stream therefore stays bounded by its send buffer, and nothing is
 *   lost: `minRev` moves forward only when events were queued.
 *
 * Invariants (the six watch guarantees rest on them):
 * - every matching event below `w.minRev` was queued to `w.sink` exactly once, in order;
 * - a synced watcher has `minRev > publishedRev` at the end of every notify;
 * - events of one revision are queued in one `sendEvents` call (never split).
 *
 * Everything runs on Node's single thread: notify, syncWatchers and the victim pass never
 * interleave, so no lock is needed.
 */
import { CompactedError, type KVStore } from '../mvcc/kv-store.js';
import { keyFromBytes } from '../mvcc/key.js';
import { isTombstone, revToBytes, bytesToRev } from '../mvcc/revision.js';
import type { KeyValue } from '../proto/gen/kv.gen.js';
import { unmarshalKeyValue } from '../proto/wire.js';
import { WatcherGroup } from './watcher-group.js';
import { Watcher, WatchEvent, type PrevKvLookup, type WatcherOptions, type WatcherSink } from './watcher.js';

/** At most this many unsynced watchers per syncWatchers pass (etcd `maxWatchersPerSync`). */
export const MAX_WATCHERS_PER_SYNC = 512;
/** At most this many revisions per watcher per syncWatchers pass (etcd `watchBatchMaxRevs`). */
export const WATCH_BATCH_MAX_REVS = 1000;
/**
 * A watcher's catch-up batch takes no further revision once it holds this many bytes of values
 * (etcd has no such bound): one slow watcher's batch never pins more than about this much.
 */
export const WATCH_BATCH_MAX_BYTES = 1024 * 1024;
/** Pause between syncWatchers passes when no progress was made, in ms (etcd: 100 ms). */
export const SYNC_INTERVAL_MS = 100;
/** Pause between victim retries, in ms (etcd `syncVictimsLoop`: 10 ms). */
export const VICTIM_INTERVAL_MS = 10;

/** Counters of the watchable store (the numbers behind etcd's `etcd_debugging_mvcc_*` metrics). */
export interface WatchStats {
  /**
   * Watchers in any group, and those canceled by compaction until their stream lets them go
   * (a client's cancel, the stream's end), as etcd's `watcher_total` counts them.
   */
  watchers: number;
  /** Unsynced watchers plus victims (etcd `slow_watcher_total`). */
  slowWatchers: number;
  /** Events queued to streams since start. */
  eventsQueued: number;
  /** Events written to the transport since start (etcd `events_total`). */
  eventsSent: number;
  /** Events queued and neither written nor dropped with their stream (etcd `pending_events_total`). */
  pendingEvents: number;
  /** Open watch streams (etcd `watch_stream_total`). */
  streams: number;
}

export class WatchableStore {
  /** The MVCC store watched. */
  readonly store: KVStore;
  /** Caught-up watchers; changed by watch, cancel, notify, syncWatchers. */
  readonly synced = new WatcherGroup();
  /** Behind watchers; changed by watch, cancel, syncWatchers, syncVictims. */
  readonly unsynced = new WatcherGroup();
  /** Watchers whose stream was full; changed by notify, syncWatchers, syncVictims, cancel. */
  readonly victims = new Set<Watcher>();
  /** Events queued to streams since start; changed by deliver. */
  private eventsQueued = 0;
  /** Events written to a transport since start; changed by reportEventsSent. */
  private eventsSent = 0;
  /** Queued events dropped because their stream closed; changed by reportEventsDropped. */
  private eventsDropped = 0;
  /** Open watch streams; changed by streamOpened / streamClosed. */
  private streams = 0;
  /** Watchers canceled by compaction that their stream still holds; changed by syncWatchers and cancel. */
  private compactedHeld = 0;
  /** Timer of the next syncWatchers pass, if one is scheduled. */
  private syncTimer: NodeJS.Timeout | undefined;
  /** Timer of the next victim retry, if one is scheduled. */
  private victimTimer: NodeJS.Timeout | undefined;
  /** Set when events were queued since the current syncWatchers pass began; reset by runSync. */
  private madeProgress = false;
  /** Called after the next notify (streams waiting to answer a progress request); see afterNextRevision. */
  private readonly revisionWaiters = new Set<() => void>();
  /** Set by close(); no timer is scheduled afterwards. */
  private closed = false;
  /** Recent history as shared events, so that successive sync passes decode and encode it once. */
  private readonly history: HistoryCache;
  /** prev_kv lookup shared by every event. */
  readonly prevKv: PrevKvLookup;

  /** Wraps `store` and subscribes to its published revisions. */
  constructor(store: KVStore) {
    this.store = store;
    this.prevKv = {
      get: (key, rev) => {
        if (rev < 1) return undefined;
        try {
          return this.store.rangeKeys(key, undefined, this.store.publishedRev, { rev, limit: 1 }).kvs[0];
        } catch (err) {
          if (err instanceof CompactedError) return undefined;
          throw err;
        }
      },
      get compactRev() {
        return store.compactRev;
      },
    };
    this.history = new HistoryCache(store);
    store.onPublish((rev, changes) => this.notify(rev, changes));
  }

  /** The revision watchers have seen up to (the newest durable revision). */
  get rev(): number {
    return this.store.publishedRev;
  }

  /** Counters (see WatchStats). */
  stats(): WatchStats {
    return {
      watchers: this.synced.size + this.unsynced.size + this.victims.size + this.compactedHeld,
      slowWatchers: this.unsynced.size + this.victims.size,
      eventsQueued: this.eventsQueued,
      eventsSent: this.eventsSent,
      pendingEvents: this.eventsQueued - this.eventsSent - this.eventsDropped,
      streams: this.streams,
    };
  }

  /** Counts a new watch stream (etcd `watchStreamGauge.Inc`). */
  streamOpened(): void {
    this.streams++;
  }

  /** Counts a closed watch stream. */
  streamClosed(): void {
    this.streams--;
  }

  /** `n` queued events were written to a transport (etcd `ReportEventReceived`). */
  reportEventsSent(n: number): void {
    this.eventsSent += n;
  }

  /** `n` queued events will never be written: their stream closed. */
  reportEventsDropped(n: number): void {
    this.eventsDropped += n;
  }

  /**
   * Adds a watcher (etcd `watchableStore.watch`). `startRev` 0 or above the current revision
   * makes it synced (a future revision waits for that revision); a past revision makes it
   * unsynced, and its history is replayed (or it is canceled with compact_revision when that
   * history was compacted).
   *
   * A negative start revision is answered as etcd 3.4 answers it: etcd's compacted revision is
   * −1 until the first compaction, so a start below it (or below a real compacted revision) is
   * canceled with that compact_revision, and a start of exactly −1 on a never-compacted store
   * watches from the next revision with no history. (etcd 3.4 also starts the backend scan of
   * the whole sync pass at the negative revision, which finds nothing and silently skips the
   * history of every other watcher of that pass; we do not copy that.)
   */
  watch(opts: WatcherOptions, sink: WatcherSink): Watcher {
    const w = new Watcher(opts, sink);
    const cur = this.store.publishedRev;
    let start = opts.startRev;
    if (start < 0) {
      if (start < this.store.compactRev) {
        w.minRev = start; // canceled with compact_revision by the next syncWatchers pass
        this.unsynced.add(w);
        this.scheduleSync(0);
        return w;
      }
      start = 0;
    }
    if (start === 0 || start > cur) {
      w.minRev = Math.max(cur + 1, start);
      w.state = 'synced';
      this.synced.add(w);
    } else {
      w.minRev = start;
      w.state = 'unsynced';
      this.unsynced.add(w);
      this.scheduleSync(0);
    }
    return w;
  }

  /** Removes a watcher from whichever group holds it (etcd `cancelWatcher`); idempotent. */
  cancel(w: Watcher): void {
    // Only a watcher canceled by compaction is canceled already: its stream held it till now.
    if (w.state === 'canceled') this.compactedHeld--;
    this.synced.delete(w);
    this.unsynced.delete(w);
    this.victims.delete(w);
    w.state = 'canceled';
  }

  /**
   * Asks for a progress notification of `w` (etcd `watchableStore.progress`): sent only when
   * `w` is synced, at the current revision. Returns true when one was queued.
   */
  progress(w: Watcher): boolean {
    if (!this.caughtUp(w)) return false;
    return w.sink.sendProgress(w, this.store.publishedRev);
  }

  /**
   * True when a progress notification at the current revision may be sent to `w`: it is synced,
   * and its start revision is not in the future (etcd #20221: a notification at R tells the
   * client to resume from R + 1, below a future start revision it never asked for).
   */
  caughtUp(w: Watcher): boolean {
    return w.state === 'synced' && w.minRev <= this.store.publishedRev + 1;
  }

  /** Calls `fn` once, after the next revision is published and notified (etcd has no such hook). */
  afterNextRevision(fn: () => void): void {
    this.revisionWaiters.add(fn);
  }

  /** Forgets a function passed to afterNextRevision. */
  cancelAfterNextRevision(fn: () => void): void {
    this.revisionWaiters.delete(fn);
  }

  /**
   * Hands the changes of durable revision `rev` to the synced watchers (etcd `notify`).
   * A watcher whose stream is full becomes a victim, with `minRev = rev`.
   */
  notify(rev: number, changes: readonly KeyValue[]): void {
    this.notifyWatchers(rev, changes);
    if (this.revisionWaiters.size > 0) {
      const waiters = [...this.revisionWaiters];
      this.revisionWaiters.clear();
      for (const fn of waiters) fn();
    }
  }

  private notifyWatchers(rev: number, changes: readonly KeyValue[]): void {
    if (this.synced.size === 0) return;
    if (changes.length === 1) {
      // The common case, one change per revision: every receiving watcher shares one
      // one-event batch, with no per-watcher array or map entry.
      const kv = changes[0]!;
      const key = keyFromBytes(kv.key);
      let batch: WatchEvent[] | undefined;
      let victims: Watcher[] | undefined;
      this.synced.forEachWatcherOf(key, (w) => {
        if (w.minRev > rev) return; // waits for a future start revision
        batch ??= [WatchEvent.fromKeyValue(rev, kv, key)];
        if (!w.accepts(batch[0]!)) return;
        if (this.deliver(w, batch, rev)) w.minRev = rev + 1;
        else (victims ??= []).push(w);
      });
      // Moved after the walk: the group is not changed while it is iterated.
      if (victims) for (const w of victims) this.victimAt(w, rev);
      return;
    }
    const batches = new Map<Watcher, WatchEvent[]>();
    for (const kv of changes) {
      const key = keyFromBytes(kv.key);
      let ev: WatchEvent | undefined;
      this.synced.forEachWatcherOf(key, (w) => {
        if (w.minRev > rev) return; // waits for a future start revision
        ev ??= WatchEvent.fromKeyValue(rev, kv, key);
        if (!w.accepts(ev)) return;
        const b = batches.get(w);
        if (b) b.push(ev);
        else batches.set(w, [ev]);
      });
    }
    for (const [w, evs] of batches) {
      if (this.deliver(w, evs, rev)) w.minRev = rev + 1;
      else this.victimAt(w, rev);
    }
  }

  /** A synced watcher whose stream refused revision `rev` becomes a victim that resumes there. */
  private victimAt(w: Watcher, rev: number): void {
    w.minRev = rev; // every earlier revision was delivered while synced
    this.synced.delete(w);
    this.makeVictim(w);
  }

  /**
   * One pass over at most MAX_WATCHERS_PER_SYNC unsynced watchers (etcd `syncWatchers`).
   * Returns how many watchers are still unsynced.
   */
  syncWatchers(): number {
    if (this.unsynced.size === 0) return 0;
    const curRev = this.store.publishedRev;
    const compactRev = this.store.compactRev;

    // 1. Choose the watchers of this pass; cancel the compacted ones, promote the caught-up ones.
    //    Chosen watchers whose batches are bound to be equal (same key or range, next revision
    //    and filters) share one: the scan visits one representative of each (`reps`, indexed
    //    by key; `repOf` maps every chosen watcher, in order, to its own), so a crowd of
    //    watchers catching up on one prefix from one revision costs one batch, not one per watcher.
    const reps = new WatcherGroup();
    const repByShape = new Map<string, Watcher>();
    const repOf = new Map<Watcher, Watcher>();
    let minRev = Infinity;
    for (const w of this.unsynced.watchers) {
      if (repOf.size >= MAX_WATCHERS_PER_SYNC) break;
      if (w.minRev < compactRev) {
        // Its next revision is gone (etcd `chooseAll`): cancel it with compact_revision. When
        // the stream is full, try again next pass.
        if (w.sink.sendCompacted(w, compactRev)) {
          this.unsynced.delete(w);
          w.state = 'canceled';
          this.compactedHeld++;
          w.sink.watcherSettled(w);
        }
        continue;
      }
      if (w.minRev > curRev) {
        this.unsynced.delete(w);
        this.toSynced(w);
        continue;
      }
      const shape = batchShape(w);
      let rep = repByShape.get(shape);
      if (rep === undefined) {
        rep = w;
        repByShape.set(shape, w);
        reps.add(w);
      }
      repOf.set(w, rep);
      if (w.minRev < minRev) minRev = w.minRev;
    }
    if (repOf.size === 0) return this.unsynced.size;

    // 2. One backend scan from the smallest next revision to the current revision; each
    //    watcher takes the matching events from its own minRev, up to WATCH_BATCH_MAX_REVS
    //    revisions or WATCH_BATCH_MAX_BYTES (its `moreRev` is where the next pass continues).
    //    Batches are kept by representative.
    const batches = new Map<Watcher, { evs: WatchEvent[]; revs: number; bytes: number; lastRev: number; moreRev: number }>();
    let capped = 0;
    for (const ev of this.history.events(minRev, curRev)) {
      const rev = ev.rev;
      reps.forEachWatcherOf(ev.key, (w) => {
        if (rev < w.minRev) return;
        let b = batches.get(w);
        if (b?.moreRev) return;
        if (!w.accepts(ev)) return;
        if (!b) batches.set(w, (b = { evs: [], revs: 0, bytes: 0, lastRev: 0, moreRev: 0 }));
        if (rev !== b.lastRev) {
          if (b.revs >= WATCH_BATCH_MAX_REVS || b.bytes >= WATCH_BATCH_MAX_BYTES) {
            b.moreRev = rev;
            capped++;
            return;
          }
          b.revs++;
          b.lastRev = rev;
        }
        b.evs.push(ev);
        b.bytes += ev.size;
      });
      if (capped === reps.size) break; // every batch of the pass is full
    }

    // 3. Queue each watcher's batch; 4. move it to synced, keep it unsynced (moreRev), or make
    //    it a victim (its stream is full; minRev unchanged, nothing was queued).
    for (const [w, rep] of repOf) {
      const b = batches.get(rep);
      if (!b || b.evs.length === 0) {
        if (b?.moreRev) w.minRev = b.moreRev;
        else {
          w.minRev = curRev + 1;
          this.unsynced.delete(w);
          this.toSynced(w);
        }
        continue;
      }
      if (!this.deliver(w, b.evs, curRev)) {
        this.unsynced.delete(w);
        this.makeVictim(w);
        continue;
      }
      if (b.moreRev) {
        w.minRev = b.moreRev;
        // Move to the back of the unsynced order so that every watcher gets its turn.
        this.unsynced.delete(w);
        this.unsynced.add(w);
      } else {
        w.minRev = curRev + 1;
        this.unsynced.delete(w);
        this.toSynced(w);
      }
    }
    return this.unsynced.size;
  }

  /** Moves every victim whose stream has room again to unsynced (etcd `syncVictimsLoop`). */
  syncVictims(): void {
    for (const w of this.victims) {
      if (!w.sink.hasRoom()) continue;
      this.victims.delete(w);
      w.state = 'unsynced';
      this.unsynced.add(w);
      this.scheduleSync(0);
    }
  }

  /** Stops the background passes. Watchers stay registered; their streams cancel them. */
  close(): void {
    this.closed = true;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    if (this.victimTimer) clearTimeout(this.victimTimer);
    this.syncTimer = this.victimTimer = undefined;
  }

  /** Queues `evs` to `w`'s stream; false when the stream is full. */
  private deliver(w: Watcher, evs: readonly WatchEvent[], headerRev: number): boolean {
    if (!w.sink.sendEvents(w, evs, headerRev)) return false;
    this.eventsQueued += evs.length;
    this.madeProgress = true;
    return true;
  }

  private toSynced(w: Watcher): void {
    w.state = 'synced';
    this.synced.add(w);
    w.sink.watcherSettled(w);
  }

  private makeVictim(w: Watcher): void {
    w.state = 'victim';
    this.victims.add(w);
    if (this.victimTimer === undefined && !this.closed) {
      this.victimTimer = setTimeout(() => this.runVictims(), VICTIM_INTERVAL_MS).unref();
    }
  }

  private runVictims(): void {
    this.victimTimer = undefined;
    this.syncVictims();
    if (this.victims.size > 0 && !this.closed) {
      this.victimTimer = setTimeout(() => this.runVictims(), VICTIM_INTERVAL_MS).unref();
    }
  }

  /** Schedules a syncWatchers pass in `delayMs` unless one is already scheduled. */
  private scheduleSync(delayMs: number): void {
    if (this.syncTimer !== undefined || this.closed) return;
    this.syncTimer = setTimeout(() => this.runSync(), delayMs).unref();
  }

  private runSync(): void {
    this.syncTimer = undefined;
    this.madeProgress = false;
    const before = this.unsynced.size;
    const after = this.syncWatchers();
    if (after > 0) {
      // More work: go on at once when the pass made progress, else wait the usual interval.
      this.scheduleSync(after < before || this.madeProgress ? 0 : SYNC_INTERVAL_MS);
    }
  }
}

/**
 * What decides a watcher's syncWatchers batch besides the history: its next revision, its
 * filters, and its key or range, in a string no two different shapes share (keys never contain
 * U+0100 or U+0101).
 */
function batchShape(w: Watcher): string {
  return `${w.minRev}:${w.noPut ? 1 : 0}${w.noDelete ? 1 : 0}:${w.key}\u0100${w.end ?? '\u0101'}`;
}

/** At most this many bytes of values stay in the history cache. */
export const HISTORY_CACHE_MAX_BYTES = 16 * 1024 * 1024;

/**
 * The events of a contiguous range of recent revisions `[from, to]`, read from the backend
 * once and shared by every later syncWatchers pass (and so by every catching-up watcher: each
 * event is decoded and encoded once, not once per pass). Only whole revisions are kept. Past
 * HISTORY_CACHE_MAX_BYTES the oldest half is dropped. Compaction needs no invalidation: a pass
 * reads only from the smallest next revision of its watchers, and a watcher whose next
 * revision was compacted is canceled before the read.
 */
class HistoryCache {
  private readonly store: KVStore;
  /** The cached events in revision order; `evs[0].rev >= from`. */
  private evs: WatchEvent[] = [];
  /** First and last revision covered (every event of them is in `evs`); to < from = empty. */
  private from = 0;
  private to = -1;
  /** Bytes of values in `evs`. */
  private bytes = 0;

  constructor(store: KVStore) {
    this.store = store;
  }

  /**
   * The events of revisions `[fromRev, toRev]` in order, from the cache and then from the
   * backend (appending to the cache while it is contiguous and has room). The caller may stop
   * iterating at any point.
   */
  *events(fromRev: number, toRev: number): Generator<WatchEvent> {
    let next = fromRev;
    if (this.to >= this.from && fromRev >= this.from && fromRev <= this.to + 1) {
      const evs = this.evs;
      const to = this.to;
      for (let i = lowerBound(evs, fromRev); i < evs.length && evs[i]!.rev <= toRev; i++) yield evs[i]!;
      next = to + 1;
    } else {
      this.evs = [];
      this.bytes = 0;
      this.from = fromRev;
      this.to = fromRev - 1;
    }
    if (next > toRev) return;
    // Records of the revision being read are held back until the revision is complete.
    let pending: WatchEvent[] = [];
    let pendingRev = 0;
    const start = revToBytes({ main: next, sub: 0 });
    const end = revToBytes({ main: toRev + 1, sub: 0 });
    for (const { key: rk, value } of this.store.backend.range('key', start, end)) {
      const rev = bytesToRev(rk).main;
      if (rev !== pendingRev) {
        this.append(pending, pendingRev);
        pending = [];
        pendingRev = rev;
      }
      const kv = unmarshalKeyValue(value);
      const ev = WatchEvent.fromRecord(rev, value, isTombstone(rk), keyFromBytes(kv.key), kv);
      pending.push(ev);
      yield ev;
    }
    this.append(pending, pendingRev);
    // The scan reached toRev: the cache covers every revision up to it.
    this.to = Math.max(this.to, toRev);
  }

  /** Appends the complete revision `rev` (it continues the cache: the scan started at `to + 1`). */
  private append(evs: WatchEvent[], rev: number): void {
    if (evs.length === 0) return;
    for (const ev of evs) {
      this.evs.push(ev);
      this.bytes += ev.size;
    }
    this.to = rev;
    if (this.bytes > HISTORY_CACHE_MAX_BYTES) this.trim();
  }

  /** Drops the oldest half of the cache, at a revision boundary. */
  private trim(): void {
    let i = this.evs.length >> 1;
    while (i < this.evs.length && i > 0 && this.evs[i]!.rev === this.evs[i - 1]!.rev) i++;
    const dropped = this.evs.slice(0, i);
    this.evs = this.evs.slice(i);
    for (const ev of dropped) this.bytes -= ev.size;
    this.from = this.evs.length > 0 ? this.evs[0]!.rev : this.to + 1;
  }
}

/** Index of the first event of `evs` (sorted by rev) with rev ≥ `rev`. */
function lowerBound(evs: readonly WatchEvent[], rev: number): number {
  let lo = 0;
  let hi = evs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (evs[mid]!.rev < rev) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
