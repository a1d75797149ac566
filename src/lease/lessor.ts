/**
 * The lessor (etcd `lease/lessor.go`): grants, renews and revokes leases, expires them, and
 * tracks which keys each lease holds. It is the store's `LeaseHooks`: a put with a lease
 * attaches the key, a delete or an overwrite detaches it.
 *
 * Time: a lease's expiry is a point on the monotonic clock (`performance.now()`), never
 * persisted. What is persisted, in the backend's `lease` bucket, is etcd's `leasepb.Lease`
 * record: key = the lease ID as 8 big-endian bytes (etcd `int64ToBytes`), value = the
 * protobuf message `{ID = 1 (int64), TTL = 2 (int64, seconds), RemainingTTL = 3 (int64, the
 * last checkpoint's remaining TTL, kept with `--experimental-enable-lease-checkpoint-persist`,
 * else 0)}`, byte for byte what etcd writes.
 *
 * Checkpoints (etcd `--experimental-enable-lease-checkpoint`): five minutes after a lease is
 * granted (or checkpointed, or the lessor started), when it counts more than that, its
 * remaining TTL is proposed through `checkpointer` (a raft entry); a restart counts that
 * remaining TTL instead of the whole TTL when the checkpoints are persisted, and a renewal
 * clears it first.
 *
 * Restart (etcd `initAndRecover` then `Promote(electionTimeout)`): every stored lease comes
 * back with its full TTL counted from the moment the lessor starts (`start`, just before the
 * server serves, as etcd's leader promotes its lessor), plus etcd's election timeout (1 s), so
 * no lease ever expires earlier than TTL after a restart, clean or not; from 1000 leases on,
 * expiries that fall close together are spread out, as etcd's `Promote` spreads them.
 *
 * Expiry (etcd `runLoop` / `revokeExpiredLeases`): every 500 ms the lessor pops up to 500
 * leases whose expiry passed (etcd's revocation rate, 1000 a second) from a min-heap and
 * hands each to `revokeExpired`, which by default is `revoke` but which the server replaces
 * with its own path (the one `LeaseRevoke` takes), so an expiry costs a raft index entry and a
 * revision exactly like a client revoke. An expired lease stays, with its keys and a TTL below
 * zero, until its revocation is done; renewing it waits for that. One handed out is looked at
 * again 3 s later (etcd `expiredLeaseRetryInterval`), and handed out again if its revocation
 * failed.
 *
 * Revocation (etcd `lessor.Revoke`): every attached key is deleted in ONE write transaction,
 * in key order, and the lease record is removed in the same backend batch, so watchers see
 * all the DELETE events at one revision and a crash keeps either everything or nothing.
 */
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import type { Backend } from '../mvcc/backend.js';
import type { Key } from '../mvcc/key.js';
import { LeaseNotFoundError, type KVStore, type LeaseHooks } from '../mvcc/kv-store.js';

/** etcd `lease.MaxLeaseTTL`: the largest TTL a lease may have, in seconds. */
export const MAX_LEASE_TTL_SEC = 9_000_000_000;
/**
 * etcd's minimum TTL with the default election settings: ceil(1.5 × election timeout (1 s)),
 * in seconds. Smaller TTLs are raised to it.
 */
export const DEFAULT_MIN_TTL_SEC = 2;
/** etcd's election timeout, added to every expiry when the lessor starts (etcd `Promote(extend)`). */
export const DEFAULT_PROMOTE_EXTEND_MS = 1000;
/** How often expiries are checked (etcd's lessor `runLoop` tick). */
export const EXPIRY_CHECK_INTERVAL_MS = 500;
/** How long a failed revocation of an expired lease waits before it is retried (etcd `expiredLeaseRetryInterval`). */
const EXPIRED_RETRY_MS = 3000;
/** etcd `defaultLeaseCheckpointInterval`. */
export const LEASE_CHECKPOINT_INTERVAL_MS = 5 * 60 * 1000;
/** etcd `maxLeaseCheckpointBatchSize`: checkpoints per raft request. */
const CHECKPOINT_BATCH = 1000;
/** etcd `leaseCheckpointRate` / 2: checkpoint requests per pass at most. */
const CHECKPOINT_BATCHES_PER_PASS = 500;
/** etcd `leaseRevokeRate`: expired leases revoked per second at most. */
const LEASE_REVOKE_RATE = 1000;
/** Expired leases handed out per pass of the expiry loop (etcd: half the rate every 500 ms). */
const REVOKE_PER_PASS = LEASE_REVOKE_RATE / 2;

/** Thrown when granting an ID that exists (etcd `lease.ErrLeaseExists`). */
export class LeaseExists extends Error {
  override name = 'LeaseExists';
  constructor() {
    super('lease already exists');
  }
}

/** Thrown when granting a TTL above MAX_LEASE_TTL_SEC (etcd `lease.ErrLeaseTTLTooLarge`). */
export class LeaseTTLTooLarge extends Error {
  override name = 'LeaseTTLTooLarge';
  constructor() {
    super('too large lease TTL');
  }
}

/** One lease (etcd `lease.Lease`). */
export class Lease {
  /** The lease ID (etcd `LeaseID`, an int64). */
  readonly id: bigint;
  /** Granted TTL in seconds (after raising to the minimum). */
  readonly ttlSec: number;
  /** Monotonic time (ms, `performance.now()` scale) when the lease expires; set by refresh. */
  expiryMs = Infinity;
  /**
   * When the expiry loop next looks at this lease (its live heap entry): its expiry, or, once
   * it was handed out for revocation, the time to try again (etcd's expiry notifier item).
   */
  dueMs = Infinity;
  /** Keys attached to this lease; changed by the store's hooks and by revoke. */
  readonly keys = new Set<Key>();
  /** The remaining TTL of its last checkpoint, in seconds; 0 when none (etcd `remainingTTL`). */
  checkpointTtlSec = 0;
  /** Called once the lease is revoked (etcd's `revokec` closing). */
  private revokedWaiters: (() => void)[] | undefined;

  constructor(id: bigint, ttlSec: number) {
    this.id = id;
    this.ttlSec = ttlSec;
  }

  /** The TTL a refresh counts: the checkpointed remaining TTL, if any, else the TTL (etcd `RemainingTTL`). */
  countedTtlSec(): number {
    return this.checkpointTtlSec > 0 ? this.checkpointTtlSec : this.ttlSec;
  }

  /** Milliseconds left before expiry at monotonic time `now` (negative once expired). */
  remainingMs(now: number): number {
    return this.expiryMs - now;
  }

  /** Resolves once the lease is revoked. */
  whenRevoked(): Promise<void> {
    return new Promise((resolve) => (this.revokedWaiters ??= []).push(resolve));
  }

  /** Marks the lease revoked, waking those waiting (see `whenRevoked`). */
  revoked(): void {
    for (const wake of this.revokedWaiters?.splice(0) ?? []) wake();
  }
}

/**
 * etcd `pkg/idutil.Generator`: IDs are `memberID's low 16 bits << 48 | counter`, the 48-bit
 * counter starting at (unix milliseconds mod 2^40) << 8, so IDs from different members and
 * different starts do not collide. The server keeps only positive IDs (top bit cleared).
 */
export class IdGenerator {
  /** Bits 48–63: the member's low 16 bits. */
  private readonly prefix: bigint;
  /** The low 48 bits, incremented per ID. */
  private suffix: bigint;

  constructor(memberId: bigint, nowMs: number = Date.now()) {
    this.prefix = (memberId & 0xffffn) << 48n;
    this.suffix = (BigInt(nowMs) & ((1n << 40n) - 1n)) << 8n;
  }

  /** The next ID (positive int64). */
  next(): bigint {
    this.suffix++;
    return (this.prefix | (this.suffix & ((1n << 48n) - 1n))) & ((1n << 63n) - 1n);
  }
}

/** Counters under etcd's metric names (`etcd_debugging_lease_*_total`). */
export interface LessorMetrics {
  /** etcd_debugging_lease_granted_total */
  granted: number;
  /** etcd_debugging_lease_revoked_total */
  revoked: number;
  /** etcd_debugging_lease_renewed_total */
  renewed: number;
  /** etcd_debugging_server_lease_expired_total: expired leases revoked */
  expired: number;
}

export interface LessorOptions {
  /** Member ID: the high 16 bits of server-chosen lease IDs. */
  memberId: bigint;
  /** Minimum TTL in seconds. @default DEFAULT_MIN_TTL_SEC (2) */
  minTtlSec?: number;
  /** Added to every restored lease's expiry at start, in ms. @default DEFAULT_PROMOTE_EXTEND_MS (1000) */
  promoteExtendMs?: number;
  /** How often expiries are checked, in ms. @default EXPIRY_CHECK_INTERVAL_MS (500) */
  checkIntervalMs?: number;
  /** How long after it is granted, renewed or checkpointed a lease is checkpointed, in ms. @default LEASE_CHECKPOINT_INTERVAL_MS (5 min) */
  checkpointIntervalMs?: number;
  /** Whether checkpoints are kept in the lease records, and so across restarts (`--experimental-enable-lease-checkpoint-persist`). @default false */
  persistCheckpoints?: boolean;
}

/** One lease's checkpoint (etcd `LeaseCheckpoint`): its remaining TTL in seconds, 0 to clear it. */
export interface LeaseCheckpoint {
  id: bigint;
  remainingTtlSec: number;
}

/** Heap entry: the lease `id` was due at `atMs` when pushed (stale once its `dueMs` moved on). */
interface Due {
  atMs: number;
  id: bigint;
}

/** A min-heap of `Due` entries by `atMs`. */
class DueHeap {
  private readonly h: Due[] = [];

  /** The soonest entry, if any. */
  peek(): Due | undefined {
    return this.h[0];
  }

  push(d: Due): void {
    const h = this.h;
    h.push(d);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.atMs <= d.atMs) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = d;
  }

  /** Removes and returns the soonest entry; the heap must not be empty. */
  pop(): Due {
    const h = this.h;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && h[r]!.atMs < h[l]!.atMs ? r : l;
        if (h[c]!.atMs >= last.atMs) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/** 8-byte big-endian form of an int64 lease ID (etcd `int64ToBytes`). */
function idToBytes(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt.asIntN(64, id));
  return b;
}

/** etcd `leasepb.Lease` {ID = 1, TTL = 2, RemainingTTL = 3}, marshalled. */
export function encodeLeaseRecord(id: bigint, ttlSec: number, remainingTtlSec = 0): Buffer {
  const w = new BinaryWriter();
  if (id !== 0n) w.uint32(8).int64(id);
  if (ttlSec !== 0) w.uint32(16).int64(ttlSec);
  if (remainingTtlSec !== 0) w.uint32(24).int64(remainingTtlSec);
  return Buffer.from(w.finish());
}

/** Parses a `leasepb.Lease` record; unknown fields are skipped. */
export function decodeLeaseRecord(bytes: Uint8Array): { id: bigint; ttlSec: number; remainingTtlSec: number } {
  const r = new BinaryReader(bytes);
  let id = 0n;
  let ttlSec = 0;
  let remainingTtlSec = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        id = BigInt(r.int64().toString());
        break;
      case 2:
        ttlSec = Number(r.int64().toString());
        break;
      case 3:
        remainingTtlSec = Number(r.int64().toString());
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return { id, ttlSec, remainingTtlSec };
}

/**
 * The lessor of one store. Create it after the store recovered; it restores its leases,
 * re-attaches the stored keys and installs itself as `store.leases`. Call `start()` to begin
 * expiring leases and `stop()` before closing the store.
 */
export class Lessor implements LeaseHooks {
  /** Live leases by ID (etcd `leaseMap`); changed by grant, revoke and restore. */
  private readonly leaseMap = new Map<bigint, Lease>();
  /** Key → the lease it is attached to (etcd `itemMap`); changed by attach/detach. */
  private readonly itemMap = new Map<Key, bigint>();
  /** Min-heap of the leases' due times (`atMs`), with stale entries skipped when popped. */
  private readonly expiries = new DueHeap();
  /** Expired leases whose revocation is in flight (not handed out again meanwhile). */
  private readonly revoking = new Set<bigint>();
  /** Server-chosen IDs. */
  private readonly ids: IdGenerator;
  private readonly store: KVStore;
  private readonly backend: Backend;
  /** Minimum TTL in seconds. */
  readonly minTtlSec: number;
  private readonly checkIntervalMs: number;
  /** Added to every lease's expiry at start (see `promote`), in ms. */
  private readonly promoteExtendMs: number;
  /** The expiry timer, set by start() and cleared by stop(). */
  private timer: NodeJS.Timeout | undefined;
  /** Counters read by the metrics (see LessorMetrics); only ever incremented. */
  private readonly counters: LessorMetrics = { granted: 0, revoked: 0, renewed: 0, expired: 0 };
  /**
   * How an expired lease is revoked: `revoke` until the server installs its own path (which
   * also counts a raft index entry). A rejected promise schedules a retry.
   */
  revokeExpired: (id: bigint) => Promise<unknown> = (id) => this.revoke(id);
  /** Called with the TTL (seconds, after the minimum is applied) of every granted lease (etcd `leaseTotalTTLs`). */
  onGrant: ((ttlSec: number) => void) | undefined;
  /**
   * Proposes checkpoints (etcd's `Checkpointer`, `--experimental-enable-lease-checkpoint`): the
   * server's path, one raft entry each call, which applies them through `checkpoint`. Unset:
   * no lease is checkpointed.
   */
  checkpointer: ((cps: LeaseCheckpoint[]) => Promise<unknown>) | undefined;
  /** Min-heap of when leases are next checkpointed, stale entries skipped (etcd `leaseCheckpointHeap`). */
  private readonly checkpoints = new DueHeap();
  private readonly checkpointIntervalMs: number;
  private readonly persistCheckpoints: boolean;

  constructor(store: KVStore, opts: LessorOptions) {
    this.store = store;
    this.backend = store.backend;
    this.minTtlSec = opts.minTtlSec ?? DEFAULT_MIN_TTL_SEC;
    this.checkIntervalMs = opts.checkIntervalMs ?? EXPIRY_CHECK_INTERVAL_MS;
    this.ids = new IdGenerator(opts.memberId);
    this.checkpointIntervalMs = opts.checkpointIntervalMs ?? LEASE_CHECKPOINT_INTERVAL_MS;
    this.persistCheckpoints = opts.persistCheckpoints ?? false;
    // 1. Restore the stored leases, at least minTtl long, with their checkpoints (etcd initAndRecover).
    for (const { value } of this.backend.range('lease')) {
      const rec = decodeLeaseRecord(value);
      const lease = new Lease(rec.id, Math.max(rec.ttlSec, this.minTtlSec));
      lease.checkpointTtlSec = rec.remainingTtlSec;
      this.leaseMap.set(rec.id, lease);
    }
    // 2. Become the store's lease hooks and re-attach the keys (etcd `restore` of the KV store).
    store.leases = this;
    store.attachLeases();
    this.promoteExtendMs = opts.promoteExtendMs ?? DEFAULT_PROMOTE_EXTEND_MS;
  }

  /**
   * Starts counting the leases' TTLs (etcd `Promote`, as the member becomes leader, just before
   * it serves) and the expiry loop (every `checkIntervalMs`; the timer does not keep Node alive).
   */
  start(): void {
    if (this.timer) return;
    this.promote(performance.now());
    this.timer = setInterval(() => {
      const now = performance.now();
      this.expire(now);
      this.checkpointDue(now);
    }, this.checkIntervalMs);
    this.timer.unref();
  }

  /**
   * etcd `Promote(extend)`: every lease's TTL counted from `now`, plus the election timeout.
   * From LEASE_REVOKE_RATE leases on, etcd then spreads expiries that fall close together:
   * walking the leases by expiry in windows of one second, every lease past the first 750 of a
   * window (3/4 of the revocation rate) is pushed back in proportion to how far past it is,
   * less how far into the window it already was, so a restart does not expire them all at once.
   */
  private promote(now: number): void {
    const extend = this.promoteExtendMs;
    for (const l of this.leaseMap.values()) {
      this.refresh(l, now, extend);
      this.scheduleCheckpoint(l, now);
    }
    if (this.leaseMap.size < LEASE_REVOKE_RATE) return;
    const perSecond = (3 * LEASE_REVOKE_RATE) / 4;
    const leases = [...this.leaseMap.values()].sort((a, b) => a.expiryMs - b.expiryMs);
    let windowStart = leases[0]!.remainingMs(now);
    let windowEnd = windowStart + 1000;
    let inWindow = 0;
    for (const l of leases) {
      const remaining = l.remainingMs(now);
      if (remaining > windowEnd) {
        windowStart = remaining;
        windowEnd = windowStart + 1000;
        inWindow = 1;
        continue;
      }
      inWindow++;
      if (inWindow <= perSecond) continue;
      const delay = (1000 * inWindow) / perSecond - (remaining - windowStart);
      windowEnd = windowStart + delay;
      this.refresh(l, now, delay + extend);
      this.scheduleCheckpoint(l, now);
    }
  }

  /** Stops the expiry loop. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The counters behind etcd's `etcd_debugging_lease_{granted,revoked,renewed}_total` and `etcd_debugging_server_lease_expired_total`. */
  metrics(): Readonly<LessorMetrics> {
    return { ...this.counters };
  }

  /** The ID the lessor gives the next lease granted without one (etcd's server picks it before proposing). */
  nextId(): bigint {
    return this.ids.next();
  }

  /**
   * Grants a lease (etcd `lessor.Grant`): `id` 0n lets the lessor choose one (etcd's server does
   * that before proposing), `ttlSec` below the minimum is raised to it. The record is queued in
   * the current backend batch; the promise resolves when it is durable. Throws (synchronously,
   * before anything changes) LeaseTTLTooLarge when `ttlSec` > MAX_LEASE_TTL_SEC, LeaseExists
   * when `id` is taken.
   */
  grant(id: bigint, ttlSec: number): { lease: Lease; durable: Promise<void> } {
    if (ttlSec > MAX_LEASE_TTL_SEC) throw new LeaseTTLTooLarge();
    if (id === 0n) id = this.ids.next();
    if (this.leaseMap.has(id)) throw new LeaseExists();
    const lease = new Lease(id, Math.max(ttlSec, this.minTtlSec));
    this.leaseMap.set(id, lease);
    const now = performance.now();
    this.refresh(lease, now, 0);
    this.scheduleCheckpoint(lease, now);
    this.backend.put('lease', idToBytes(id), encodeLeaseRecord(id, lease.ttlSec));
    this.counters.granted++;
    this.onGrant?.(lease.ttlSec);
    return { lease, durable: this.store.sync() };
  }

  /**
   * Revokes a lease (etcd `lessor.Revoke`): deletes its keys in one write transaction (one
   * revision, none when it has no keys) and removes its record in the same batch. Resolves when
   * durable. Throws LeaseNotFoundError (synchronously) for an unknown lease.
   */
  revoke(id: bigint): Promise<void> {
    const lease = this.leaseMap.get(id);
    if (!lease) throw new LeaseNotFoundError();
    const txn = this.store.beginWrite();
    // Sorted, as etcd does, so every member writes the same history.
    for (const key of [...lease.keys].sort()) txn.deleteRange(key, undefined);
    this.leaseMap.delete(id);
    this.revoking.delete(id);
    this.backend.remove('lease', idToBytes(id));
    this.counters.revoked++;
    const done = txn.end();
    const durable = txn.changes.length > 0 ? done : this.store.sync();
    return durable.then(() => lease.revoked());
  }

  /**
   * Renews a lease (etcd `lessor.Renew`): its expiry becomes now + TTL. Resolves to the TTL in
   * seconds. Rejects with LeaseNotFoundError for an unknown lease; for one already expired, once
   * its revocation is done (as etcd waits for it; while revoking fails, as under a CORRUPT
   * alarm, that is never).
   */
  async renew(id: bigint): Promise<number> {
    const lease = this.leaseMap.get(id);
    if (!lease) throw new LeaseNotFoundError();
    const now = performance.now();
    if (lease.expiryMs <= now) {
      await lease.whenRevoked();
      throw new LeaseNotFoundError();
    }
    // A checkpoint is cleared first, through its own raft entry, so the full TTL counts again.
    if (this.checkpointer && lease.checkpointTtlSec > 0) await this.checkpointer([{ id, remainingTtlSec: 0 }]);
    this.refresh(lease, performance.now(), 0);
    this.counters.renewed++;
    return lease.ttlSec;
  }

  /**
   * Applies a checkpoint (etcd `lessor.Checkpoint`): the lease's remaining TTL, which a restart
   * counts instead of its TTL when the checkpoints are persisted (then its record is rewritten
   * in the current backend batch), until a renewal clears it; the next checkpoint is scheduled.
   * An unknown lease is ignored.
   */
  checkpoint(cp: LeaseCheckpoint): void {
    const lease = this.leaseMap.get(cp.id);
    if (!lease) return;
    lease.checkpointTtlSec = cp.remainingTtlSec;
    if (this.persistCheckpoints) this.backend.put('lease', idToBytes(lease.id), encodeLeaseRecord(lease.id, lease.ttlSec, lease.checkpointTtlSec));
    this.scheduleCheckpoint(lease, performance.now());
  }

  /** The lease `id`, or undefined (etcd `lessor.Lookup`). */
  lookup(id: bigint): Lease | undefined {
    return this.leaseMap.get(id);
  }

  /**
   * etcd `LeaseTimeToLive` on the leader: remaining seconds (truncated, as Go's
   * `int64(d.Seconds())`), granted TTL and the attached keys in key order; undefined when the
   * lease does not exist.
   */
  timeToLive(id: bigint): { ttlSec: number; grantedTtlSec: number; keys: Key[] } | undefined {
    const lease = this.leaseMap.get(id);
    if (!lease) return undefined;
    const remainingMs = lease.remainingMs(performance.now());
    return { ttlSec: Math.trunc(remainingMs / 1000), grantedTtlSec: lease.ttlSec, keys: [...lease.keys].sort() };
  }

  /** Every live lease, soonest expiry first (etcd `lessor.Leases`). */
  leases(): Lease[] {
    return [...this.leaseMap.values()].sort((a, b) => a.expiryMs - b.expiryMs);
  }

  // ---- LeaseHooks (called by the store's write transactions) ----

  exists(id: bigint): boolean {
    return this.leaseMap.has(id);
  }

  attach(id: bigint, key: Key): void {
    const lease = this.leaseMap.get(id);
    if (!lease) return;
    lease.keys.add(key);
    // The lease's own ID, not the caller's: that is a BigInt decoded from each put request, 24
    // bytes a key when every key keeps its own.
    this.itemMap.set(key, lease.id);
  }

  detach(id: bigint, key: Key): void {
    this.leaseMap.get(id)?.keys.delete(key);
    if (this.itemMap.get(key) === id) this.itemMap.delete(key);
  }

  leaseOf(key: Key): bigint {
    return this.itemMap.get(key) ?? 0n;
  }

  // ---- expiry ----

  /** Sets the lease's expiry to now + TTL (its checkpointed remaining TTL, if any) + `extendMs` and schedules it. */
  private refresh(lease: Lease, now: number, extendMs: number): void {
    lease.expiryMs = now + lease.countedTtlSec() * 1000 + extendMs;
    this.schedule(lease, lease.expiryMs);
  }

  /** etcd `scheduleCheckpointIfNeeded`: with checkpoints on, a lease counting more than the interval is checkpointed one interval from `now`. */
  private scheduleCheckpoint(lease: Lease, now: number): void {
    if (!this.checkpointer || lease.countedTtlSec() * 1000 <= this.checkpointIntervalMs) return;
    this.checkpoints.push({ atMs: now + this.checkpointIntervalMs, id: lease.id });
  }

  /**
   * etcd `checkpointScheduledLeases`: the checkpoints due by `now`, in requests of up to 1000,
   * each lease's remaining TTL rounded up to seconds; a lease gone, expired, or with its whole
   * TTL still ahead is skipped.
   */
  private checkpointDue(now: number): void {
    const checkpointer = this.checkpointer;
    if (!checkpointer) return;
    for (let i = 0; i < CHECKPOINT_BATCHES_PER_PASS; i++) {
      const cps: LeaseCheckpoint[] = [];
      while (cps.length < CHECKPOINT_BATCH && (this.checkpoints.peek()?.atMs ?? Infinity) <= now) {
        const lease = this.leaseMap.get(this.checkpoints.pop().id);
        if (!lease || lease.expiryMs <= now) continue;
        const remainingTtlSec = Math.ceil((lease.expiryMs - now) / 1000);
        if (remainingTtlSec >= lease.ttlSec) continue;
        cps.push({ id: lease.id, remainingTtlSec });
      }
      // As etcd's, a checkpoint that fails is not retried: the lease keeps its earlier one.
      if (cps.length > 0) checkpointer(cps).catch(() => {});
      if (cps.length < CHECKPOINT_BATCH) return;
    }
  }

  /** Has the expiry loop look at `lease` at `atMs` (and not before). */
  private schedule(lease: Lease, atMs: number): void {
    lease.dueMs = atMs;
    this.expiries.push({ atMs, id: lease.id });
  }

  /**
   * One pass of the expiry loop (etcd `revokeExpiredLeases`): at most REVOKE_PER_PASS leases
   * whose expiry passed, soonest first, are handed to `revokeExpired` (etcd's revocation rate,
   * 1000 a second); the rest wait for the next pass, still listed, their keys still there and
   * their TTL below zero. Each lease handed out is looked at again EXPIRED_RETRY_MS later, and
   * handed out again then if its revocation failed (etcd `expireExists`). Returns the IDs
   * handed out.
   */
  expire(now: number = performance.now()): bigint[] {
    const expired: bigint[] = [];
    while (expired.length < REVOKE_PER_PASS && (this.expiries.peek()?.atMs ?? Infinity) <= now) {
      const due = this.expiries.pop();
      const lease = this.leaseMap.get(due.id);
      // Revoked, or renewed since.
      if (!lease || lease.dueMs !== due.atMs) continue;
      this.schedule(lease, now + EXPIRED_RETRY_MS);
      if (lease.expiryMs > now || this.revoking.has(due.id)) continue;
      expired.push(due.id);
    }
    for (const id of expired) {
      this.revoking.add(id);
      let result: Promise<unknown>;
      try {
        result = this.revokeExpired(id);
      } catch (err) {
        result = Promise.reject(err);
      }
      result.then(
        () => this.counters.expired++,
        () => this.revoking.delete(id),
      );
    }
    return expired;
  }
}
