/**
 * Distributed lock and leader election on leases, txns and watches, with the key layout of
 * etcd's Go `concurrency` package, so they interoperate with `etcdctl lock` / `etcdctl elect`
 * and Go programs holding the same names:
 *
 * - a {@link Session} is a lease kept alive by the client (etcdctl uses a 60 s TTL);
 * - a contender writes `<name>/<lease ID in lowercase hex>` with that lease (value: empty for
 *   a lock, the proposal for an election) unless it exists;
 * - the owner is the key of the prefix with the lowest create revision; the others wait until
 *   every key created before theirs is deleted (each waits for the deletion of the newest
 *   older key only, so a release wakes one contender).
 */
import type { KeyValue } from '../proto/gen/kv.gen.js';
import type { ResponseHeader } from '../proto/gen/rpc.gen.js';
import type { Client } from './client.js';
import { AbortError, EtcdClientError } from './errors.js';
import type { LeaseKeepAlive } from './lease.js';
import type { WatchEvent, Watcher } from './watch.js';
import { Compare, Op } from './txn.js';

/** Options of {@link Session.create}. */
export interface SessionOptions {
  /** TTL of the session's lease, in seconds. @default 60 (as etcd's concurrency package) */
  ttlSeconds?: number;
}

/** A lease kept alive for as long as the session is open; locks and leaderships end with it. */
export class Session {
  /** The client the session's requests go through. */
  readonly client: Client;
  /** The session's lease ID. */
  readonly lease: bigint;
  /** The keep-alive of the lease: listen to 'lost' to know when locks and leadership are gone. */
  readonly keepAlive: LeaseKeepAlive;

  private constructor(client: Client, lease: bigint) {
    this.client = client;
    this.lease = lease;
    this.keepAlive = client.keepAlive(lease);
  }

  /** Grants a lease and keeps it alive. @throws the lease grant's errors (UnavailableError, …). */
  static async create(client: Client, options: SessionOptions = {}): Promise<Session> {
    const granted = await client.leaseGrant(options.ttlSeconds ?? 60);
    return new Session(client, granted.ID);
  }

  /** `<prefix><lease ID in hex>`: this session's key under a lock or election prefix. */
  keyUnder(prefix: string): string {
    return `${prefix}${this.lease.toString(16)}`;
  }

  /** Stops the keep-alive and revokes the lease, releasing every lock and leadership of the session. */
  async close(): Promise<void> {
    this.keepAlive.stop();
    await this.client.leaseRevoke(this.lease).catch(() => undefined);
  }
}

/** The kv of the first event of `watcher` that `accept`s, or undefined when the watch ends or `signal` fires; cancels the watcher. */
async function firstMatching(watcher: Watcher, accept: (e: WatchEvent) => boolean, signal: AbortSignal | undefined): Promise<KeyValue | undefined> {
  const onAbort = (): void => void watcher.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const response of watcher) {
      const event = response.events.find(accept);
      if (event !== undefined) return event.kv;
    }
    return undefined;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await watcher.cancel();
  }
}

/** Resolves when `key` is deleted at `revision` or later (etcd `waitDelete`). */
async function waitDelete(client: Client, key: Buffer, revision: bigint, signal: AbortSignal | undefined): Promise<void> {
  const deleted = await firstMatching(client.watch(key, { startRevision: revision, filters: ['noPut'] }), (e) => e.type === 'delete', signal);
  if (deleted !== undefined) return;
  throw signal?.aborted ? new AbortError('wait aborted', { cause: signal.reason }) : new EtcdClientError('lost watcher waiting for delete');
}

/** Waits until no key of `prefix` has a create revision ≤ `maxCreateRevision` (etcd `waitDeletes`). */
async function waitDeletes(client: Client, prefix: string, maxCreateRevision: bigint, signal: AbortSignal | undefined): Promise<ResponseHeader> {
  for (;;) {
    const newestOlder = await client.get(prefix, {
      prefix: true, sort: { target: 'create', order: 'descend' }, limit: 1, maxCreateRevision, signal,
    });
    const kv = newestOlder.kvs[0];
    if (kv === undefined) return newestOlder.header!;
    await waitDelete(client, kv.key, newestOlder.header!.revision, signal);
  }
}

/** A distributed mutex named `name` (etcd `concurrency.NewMutex(session, name)`; `etcdctl lock name`). */
export class Mutex {
  private readonly session: Session;
  private readonly prefix: string;
  /** The create revision of this contender's key once lock() wrote it; 0n before. */
  private myRevision = 0n;

  /** @param name the lock's name; keys live under `<name>/` (as `etcdctl lock <name>`). */
  constructor(session: Session, name: string) {
    this.session = session;
    this.prefix = `${name}/`;
  }

  /** This contender's key: `<name>/<lease hex>`. */
  get key(): string {
    return this.session.keyUnder(this.prefix);
  }

  /**
   * Waits until the lock is held by this session.
   * @param options `signal` aborts the wait (the contender's key is then deleted).
   * @throws AbortError when aborted; the client's errors otherwise (the key is deleted first).
   */
  async lock(options: { signal?: AbortSignal } = {}): Promise<void> {
    const client = this.session.client;
    const owner = Op.get(this.prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 });
    const res = await client.txn()
      .if(Compare.createRevision(this.key, '=', 0))
      .then(Op.put(this.key, '', { lease: this.session.lease }), owner)
      .else(Op.get(this.key), owner)
      .commit({ signal: options.signal });
    this.myRevision = res.succeeded ? res.header!.revision : res.responses[0]!.responseRange!.kvs[0]!.createRevision;
    const ownerKv = res.responses[1]!.responseRange!.kvs[0];
    if (ownerKv === undefined || ownerKv.createRevision === this.myRevision) return;
    try {
      await waitDeletes(client, this.prefix, this.myRevision - 1n, options.signal);
    } catch (err) {
      await this.unlock();
      throw err;
    }
  }

  /** Releases the lock (deletes this contender's key). */
  async unlock(): Promise<void> {
    await this.session.client.delete(this.key);
    this.myRevision = 0n;
  }
}

/** A leader election named `name` (etcd `concurrency.NewElection(session, name)`; `etcdctl elect name`). */
export class Election {
  private readonly session: Session;
  private readonly prefix: string;
  /** The create revision of this candidate's key while campaigning or leading; 0n otherwise. */
  private leaderRevision = 0n;

  /** @param name the election's name; keys live under `<name>/` (as `etcdctl elect <name>`). */
  constructor(session: Session, name: string) {
    this.session = session;
    this.prefix = `${name}/`;
  }

  /** This candidate's key: `<name>/<lease hex>`. */
  get key(): string {
    return this.session.keyUnder(this.prefix);
  }

  /**
   * Campaigns with `value` and resolves once this session is the leader.
   * @throws AbortError when `signal` fires (the candidacy is withdrawn); the client's errors.
   */
  async campaign(value: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const client = this.session.client;
    const res = await client.txn()
      .if(Compare.createRevision(this.key, '=', 0))
      .then(Op.put(this.key, value, { lease: this.session.lease }))
      .else(Op.get(this.key))
      .commit({ signal: options.signal });
    this.leaderRevision = res.header!.revision;
    if (!res.succeeded) {
      const kv = res.responses[0]!.responseRange!.kvs[0]!;
      this.leaderRevision = kv.createRevision;
      if (kv.value.toString() !== value) await this.proclaim(value);
    }
    try {
      await waitDeletes(client, this.prefix, this.leaderRevision - 1n, options.signal);
    } catch (err) {
      if (options.signal?.aborted) await this.resign();
      throw err;
    }
  }

  /**
   * Changes the leader's value without a new election.
   * @throws EtcdClientError `election: not leader` when this session is not campaigning.
   */
  async proclaim(value: string): Promise<void> {
    if (this.leaderRevision === 0n) throw new EtcdClientError('election: not leader');
    const res = await this.session.client.txn()
      .if(Compare.createRevision(this.key, '=', this.leaderRevision))
      .then(Op.put(this.key, value, { lease: this.session.lease }))
      .commit();
    if (!res.succeeded) {
      this.leaderRevision = 0n;
      throw new EtcdClientError('election: not leader');
    }
  }

  /** Gives up leadership (or candidacy): deletes this candidate's key if it is still ours. */
  async resign(): Promise<void> {
    if (this.leaderRevision === 0n) return;
    await this.session.client.txn()
      .if(Compare.createRevision(this.key, '=', this.leaderRevision))
      .then(Op.delete(this.key))
      .commit();
    this.leaderRevision = 0n;
  }

  /** The current leader's key-value (the oldest candidate), or undefined when there is none. */
  async leader(): Promise<KeyValue | undefined> {
    return (await this.firstCandidate()).kvs[0];
  }

  /**
   * Yields the leader's key-value now (or when the first candidate appears), each new value the
   * leader proclaims, and each new leader, until `signal` fires or the iteration is stopped
   * (etcd's `Election.Observe`: the leader's own key is watched, so no proclaimed value is
   * skipped). Survives reconnects like any watch.
   * @throws CompactedError if a watch's history was compacted while disconnected.
   */
  async *observe(options: { signal?: AbortSignal } = {}): AsyncGenerator<KeyValue, void> {
    const client = this.session.client;
    while (options.signal?.aborted !== true) {
      const first = await this.firstCandidate();
      let leader = first.kvs[0];
      let from = first.header!.revision + 1n;
      if (leader === undefined) {
        // No candidate: wait for the first put under the prefix (a delete would only make us spin).
        leader = await firstMatching(client.watch(this.prefix, { prefix: true, startRevision: from }), (e) => e.type === 'put', options.signal);
        if (leader === undefined) return;
        from = leader.modRevision + 1n;
      }
      yield leader;
      // Follow the leader's key: each put is a proclaimed value, a delete ends its leadership.
      const watcher = client.watch(leader.key, { startRevision: from });
      const onAbort = (): void => void watcher.cancel();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      let deleted = false;
      try {
        for await (const response of watcher) {
          for (const event of response.events) {
            if (event.type === 'delete') {
              deleted = true;
              break;
            }
            yield event.kv;
          }
          if (deleted) break;
        }
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        await watcher.cancel();
      }
      if (!deleted) return;
    }
  }

  private firstCandidate() {
    return this.session.client.get(this.prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 });
  }
}
