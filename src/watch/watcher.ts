/**
 * A watcher and the events it receives (etcd `mvcc/watcher.go`, `watchable_store.go`'s
 * `watcher` struct).
 *
 * A `WatchEvent` is one change of one revision, shared by every watcher and every watch stream
 * that receives it: its protobuf bytes are built once (lazily, the first time a watcher needs
 * them) and its prev_kv is looked up once, not once per watcher. The bytes are a complete
 * `WatchResponse.events` entry (field 11, length-delimited), so a response is its fixed fields
 * followed by the concatenated entries of its events (protobuf lets repeated fields be
 * concatenated).
 */
import type { KeyValue } from '../proto/gen/kv.gen.js';
import { lengthPrefix, marshalKeyValue } from '../proto/wire.js';
import type { Key } from '../mvcc/key.js';

/** prev_kv's source: the store's reads at a past revision. */
export interface PrevKvLookup {
  /** The key's KeyValue at `rev`; undefined when it had none or `rev` is compacted. */
  get(key: Key, rev: number): KeyValue | undefined;
  /** The store's compacted revision: what is below it can no longer be read. */
  readonly compactRev: number;
}

/** Tag of `WatchResponse.events` (field 11, wire type 2). */
const EVENTS_TAG = (11 << 3) | 2;
/** Tag of `Event.type` (field 1, varint) followed by DELETE = 1. */
const DELETE_TYPE = Buffer.from([(1 << 3) | 0, 1]);
/** Tag of `Event.kv` (field 2, wire type 2). */
const KV_TAG = (2 << 3) | 2;
/** Tag of `Event.prev_kv` (field 3, wire type 2). */
const PREV_KV_TAG = (3 << 3) | 2;

/**
 * One event (etcd `mvccpb.Event`) of main revision `rev`, shared between watchers.
 * Build it with `fromKeyValue` (the write path) or `fromRecord` (history replay).
 */
export class WatchEvent {
  /** Main revision of the change. */
  readonly rev: number;
  /** True for a DELETE event, false for a PUT. */
  readonly isDelete: boolean;
  /** The changed key as a store key (latin1 string). */
  readonly key: Key;
  /** True for the PUT that created the key (version 1): etcd sends no prev_kv for it. */
  readonly isCreate: boolean;
  /** Marshalled KeyValue of the change (mod_revision = rev, also for deletes). */
  private readonly kvBytes: Buffer;
  /** The events entry without prev_kv; built on first use, then immutable. */
  private plain: Buffer | undefined;
  /** The events entry with prev_kv; built on first use by a prev_kv watcher, then immutable. */
  private withPrev: Buffer | undefined;

  private constructor(rev: number, isDelete: boolean, key: Key, isCreate: boolean, kvBytes: Buffer) {
    this.rev = rev;
    this.isDelete = isDelete;
    this.key = key;
    this.isCreate = isCreate;
    this.kvBytes = kvBytes;
  }

  /** An event from a change handed to `onPublish` (a delete has create_revision 0). */
  static fromKeyValue(rev: number, kv: KeyValue, key: Key): WatchEvent {
    const isDelete = kv.createRevision === 0n;
    return new WatchEvent(rev, isDelete, key, !isDelete && kv.version === 1n, marshalKeyValue(kv));
  }

  /**
   * An event from a backend history record: `value` is the marshalled KeyValue stored at
   * revision `rev`; tombstone records carry only the key, so their mod_revision is set here.
   */
  static fromRecord(rev: number, value: Buffer, tombstone: boolean, key: Key, kv: KeyValue): WatchEvent {
    if (tombstone) {
      const del: KeyValue = { ...kv, createRevision: 0n, modRevision: BigInt(rev), version: 0n };
      return new WatchEvent(rev, true, key, false, marshalKeyValue(del));
    }
    return new WatchEvent(rev, false, key, kv.version === 1n, value);
  }

  /** Bytes of the event's KeyValue (what it costs to hold). */
  get size(): number {
    return this.kvBytes.length;
  }

  /**
   * The `WatchResponse.events` entry of this event, with prev_kv when `prevKv` is set and the
   * previous value still exists (read through `lookup` at rev − 1, once per event).
   */
  entry(prevKv: boolean, lookup: PrevKvLookup): Buffer {
    if (prevKv && !this.isCreate) {
      // etcd reads prev_kv as it sends the event: once rev − 1 is compacted there is none, even
      // if an earlier send found it.
      if (this.rev - 1 < lookup.compactRev) return this.plainEntry();
      if (this.withPrev === undefined) {
        const prev = lookup.get(this.key, this.rev - 1);
        this.withPrev = prev === undefined ? this.plainEntry() : this.build(marshalKeyValue(prev));
      }
      return this.withPrev;
    }
    return this.plainEntry();
  }

  private plainEntry(): Buffer {
    if (this.plain === undefined) this.plain = this.build(undefined);
    return this.plain;
  }

  /** Encodes `events { type kv [prev_kv] }` by hand. */
  private build(prev: Buffer | undefined): Buffer {
    const parts: Buffer[] = [];
    if (this.isDelete) parts.push(DELETE_TYPE);
    parts.push(lengthPrefix(KV_TAG, this.kvBytes.length), this.kvBytes);
    if (prev) parts.push(lengthPrefix(PREV_KV_TAG, prev.length), prev);
    let bodyLen = 0;
    for (const p of parts) bodyLen += p.length;
    return Buffer.concat([lengthPrefix(EVENTS_TAG, bodyLen), ...parts]);
  }
}

/** Where a watcher is (etcd keeps the same three groups plus the canceled state). */
export type WatcherState = 'synced' | 'unsynced' | 'victim' | 'canceled';

/**
 * The receiving side of watchers: a watch stream (etcd's `watchStream.ch` plus the gRPC
 * stream's `sendLoop`). Every method is called synchronously by the watchable store and must
 * not call back into it.
 */
export interface WatcherSink {
  /**
   * Queues `events` of `w` (at least one; whole revisions, filtered, in revision order);
   * `headerRev` is the store revision to put in the response header. Returns false when the
   * send buffer is full: nothing was queued and the store makes the watcher a victim.
   */
  sendEvents(w: Watcher, events: readonly WatchEvent[], headerRev: number): boolean;
  /** Queues the cancellation of `w` because its next revision was compacted; false when full. */
  sendCompacted(w: Watcher, compactRev: number): boolean;
  /** Queues a progress notification of `w` at `rev`; false when full (then it is skipped). */
  sendProgress(w: Watcher, rev: number): boolean;
  /** True when the send buffer has room again (a victim may be retried). */
  hasRoom(): boolean;
  /**
   * Told when `w` left the unsynced or victim group: moved to the synced one, or canceled because
   * its next revision was compacted (a deferred progress request may be answered).
   */
  watcherSettled(w: Watcher): void;
}

/**
 * A watch ID (etcd `mvcc.WatchID`, an int64): a number when within ±(2^53 − 1), where it is exact,
 * else a bigint, so that every ID has one form.
 */
export type WatchId = number | bigint;

/** Options of a new watcher (etcd `WatchCreateRequest`, already validated). */
export interface WatcherOptions {
  /** Watch ID, unique within its stream. */
  id: WatchId;
  /** First key of the range (a single key when `end` is undefined). */
  key: Key;
  /** undefined: the single key `key`; '': every key ≥ `key` (from-key); otherwise `[key, end)`. */
  end: Key | undefined;
  /** Revision to start from; 0 = the revision after the current one. */
  startRev: number;
  /** Drop PUT events (etcd filter NOPUT). @default false */
  noPut?: boolean;
  /** Drop DELETE events (etcd filter NODELETE). @default false */
  noDelete?: boolean;
  /** Attach the previous KeyValue to each event. @default false */
  prevKv?: boolean;
  /** Receive periodic progress notifications. @default false */
  progressNotify?: boolean;
  /** Split responses larger than the max request size into fragments. @default false */
  fragment?: boolean;
}

/** Bits of `Watcher.flags` (options, fixed at creation). */
const NO_PUT = 1;
const NO_DELETE = 2;
const PREV_KV = 4;
const PROGRESS_NOTIFY = 8;
const FRAGMENT = 16;
/** `Watcher.flags >> STATE_SHIFT` is the index of its state in STATES. */
const STATE_SHIFT = 5;
const OPTION_BITS = (1 << STATE_SHIFT) - 1;
const STATES: readonly WatcherState[] = ['unsynced', 'synced', 'victim', 'canceled'];
const STATE_INDEX: Readonly<Record<WatcherState, number>> = { unsynced: 0, synced: 1, victim: 2, canceled: 3 };

/**
 * A watcher (etcd `mvcc.watcher`): one key or key range watched from a revision.
 *
 * An idle server holds one of these per watch, so it is kept to seven fields (80 bytes on 64-bit
 * V8): the options and the state share one small integer, `flags`, read through accessors on
 * the prototype; no field holds a closure or a collection.
 */
export class Watcher {
  /** Watch ID within its stream. */
  readonly id: WatchId;
  /** First key watched. */
  readonly key: Key;
  /** End of the range (see WatcherOptions.end). */
  readonly end: Key | undefined;
  /** Where its events go. */
  readonly sink: WatcherSink;
  /**
   * The next revision this watcher must receive: every matching event below it was queued.
   * Changed only by the watchable store (creation, notify, syncWatchers).
   */
  minRev = 0;
  /** Option bits (NO_PUT … FRAGMENT) and the state index above STATE_SHIFT; see the accessors. */
  private flags: number;
  /**
   * The sink's queued response of this watcher that later events may still join, or undefined;
   * read and written only by the sink (a watch stream keeps it here rather than in a map of its
   * own, whose entries came and went with every revision).
   */
  joinable: object | undefined = undefined;

  constructor(opts: WatcherOptions, sink: WatcherSink) {
    this.id = opts.id;
    this.key = opts.key;
    this.end = opts.end;
    this.sink = sink;
    this.flags =
      (opts.noPut ? NO_PUT : 0) |
      (opts.noDelete ? NO_DELETE : 0) |
      (opts.prevKv ? PREV_KV : 0) |
      (opts.progressNotify ? PROGRESS_NOTIFY : 0) |
      (opts.fragment ? FRAGMENT : 0);
  }

  /** Drops PUT events (etcd filter NOPUT). */
  get noPut(): boolean {
    return (this.flags & NO_PUT) !== 0;
  }

  /** Drops DELETE events (etcd filter NODELETE). */
  get noDelete(): boolean {
    return (this.flags & NO_DELETE) !== 0;
  }

  /** Attaches the previous KeyValue to each event. */
  get prevKv(): boolean {
    return (this.flags & PREV_KV) !== 0;
  }

  /** Receives periodic progress notifications. */
  get progressNotify(): boolean {
    return (this.flags & PROGRESS_NOTIFY) !== 0;
  }

  /** Splits responses larger than the max request size into fragments. */
  get fragment(): boolean {
    return (this.flags & FRAGMENT) !== 0;
  }

  /** Its group ('unsynced' until the watchable store places it); changed only by the watchable store. */
  get state(): WatcherState {
    return STATES[this.flags >> STATE_SHIFT]!;
  }

  set state(s: WatcherState) {
    this.flags = (this.flags & OPTION_BITS) | (STATE_INDEX[s] << STATE_SHIFT);
  }

  /** True when `key` is inside what this watcher watches. */
  contains(key: Key): boolean {
    if (this.end === undefined) return key === this.key;
    return key >= this.key && (this.end === '' || key < this.end);
  }

  /** True when the watcher's filters keep `ev` (etcd `FilterFunc`s). */
  accepts(ev: WatchEvent): boolean {
    return (this.flags & (ev.isDelete ? NO_DELETE : NO_PUT)) === 0;
  }
}
