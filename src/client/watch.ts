/**
 * Watches, modelled on etcd's Go client (`clientv3/watch.go`): every watch is a substream of
 * one gRPC Watch stream per group (default: one stream for the whole client); when the stream
 * breaks, every watch of the group is re-created on a new stream, on the next endpoint, from
 * its last delivered revision + 1.
 *
 * ## Connection lifecycle of a WatchStream (one per group)
 *
 * ```
 *            add(first watcher)                 first response
 *   Idle ───────────────────────► Connecting ───────────────────► Open
 *    ▲                              │   ▲                          │
 *    │ last watcher removed         │   │ backoff timer fires      │ stream error / end
 *    │ (stream cancelled)           ▼   │                          ▼
 *    └──────────────────────────── Backoff ◄───────────────────────┘
 *                                   (endpoint marked down; every watcher gets 'disconnected')
 *   any state ── client.close() ──► Closed (stream cancelled, every watcher ends)
 * ```
 *
 * - *Connecting*: once `connection.endpoint()` gave a connected endpoint (it waits while none
 *   is) and the auth token is at hand, a Watch call was opened on it and one create request per
 *   live watcher was written (pipelined). Each create carries `start_revision = nextRev`: the
 *   revision after the last one delivered (or the caller's start revision / 0 before the
 *   first response).
 * - *Open*: the server answered once; the endpoint is marked healthy and the backoff resets.
 *   New watchers send their create right away.
 * - Created acknowledgements arrive in the order the creates were written (etcd's sendLoop
 *   guarantees it), so they are matched FIFO against `pendingCreates`. A watcher cancelled
 *   before its ack gets a cancel request for the acknowledged ID instead.
 * - A stream error that is not a halt error (permission denied, invalid argument, …) is a
 *   disconnection: IDs, pending creates and partial fragments of that stream are dropped,
 *   and the group goes to *Backoff*. A halt error ends every watcher with it, as does the
 *   AbortError of a client closed before the stream could open (a watch made after close()).
 *
 * ## Guarantees to the user
 * Events are delivered in revision order, each once: a watcher only accepts events with
 * `mod_revision >= nextRev` and then sets `nextRev = last mod_revision + 1`; a revision is
 * never split (fragments are reassembled before delivery). If `nextRev` was compacted while
 * disconnected, the server cancels the re-created watch with `compact_revision` and the
 * watcher ends with {@link CompactedError}.
 */
import { EventEmitter } from 'node:events';
import { status as Status, type ClientDuplexStream, type Metadata } from '@grpc/grpc-js';
import { Event_EventType, type KeyValue } from '../proto/gen/kv.gen.js';
import {
  WatchCreateRequest_FilterType,
  type ResponseHeader,
  type WatchCreateRequest,
  type WatchRequest,
  type WatchResponse as WatchResponseMessage,
} from '../proto/gen/rpc.gen.js';
import type { Connection, Endpoint } from './connection.js';
import { AbortError, CompactedError, EtcdClientError, retriedError, toClientError, UnavailableError } from './errors.js';
import { keyRange, toBigInt, type Bytes, type Int64, type RangeOptions } from './kv.js';

/** Options of {@link Client.watch}. */
export interface WatchOptions extends RangeOptions {
  /** First revision to deliver; unset = changes after the watch is created. */
  startRevision?: Int64;
  /** Deliver each event's previous key-value as `prevKv`. */
  prevKv?: boolean;
  /** Leave out puts and/or deletes. */
  filters?: Array<'noPut' | 'noDelete'>;
  /** Ask the server for periodic progress notifications (every 10 minutes on etcd by default). */
  progressNotify?: boolean;
  /** Let the server split huge responses; the watcher reassembles them, so a revision is still delivered whole. */
  fragment?: boolean;
  /** Watches with the same group share one gRPC stream. @default '' (one stream for the client) */
  group?: string;
}

/** One change: a put or a delete of `kv.key` at `kv.modRevision`. */
export interface WatchEvent {
  type: 'put' | 'delete';
  /** The key-value after the change (for a delete: the key, with `modRevision` of the delete). */
  kv: KeyValue;
  /** The key-value before the change, when `prevKv` was asked for and the key existed. */
  prevKv: KeyValue | undefined;
}

/** One delivery to a watcher: events of one or more whole revisions, or a progress notification. */
export interface WatchResponse {
  /** The server's response header; `header.revision` is the store revision when it was sent. */
  header: ResponseHeader;
  /** The events, in revision order (empty for a progress notification). */
  events: WatchEvent[];
  /** True for a progress notification: every event up to `header.revision` has been delivered. */
  progressNotify: boolean;
}

/** The callbacks a {@link Watcher} offers through `on(name, listener)`. */
export interface WatcherEvents {
  /** The first created acknowledgement (the watch is registered on the server). */
  created: [];
  /** Each event, with the response it arrived in. */
  event: [event: WatchEvent, response: WatchResponse];
  /** Each response (events or progress). */
  response: [response: WatchResponse];
  /** A progress notification (per-watch, or stream-wide after `requestProgress()`). */
  progress: [response: WatchResponse];
  /**
   * The stream broke; the watch will be re-created from its next revision (the error is
   * `retryable`). Once per outage: failed reconnection attempts do not fire it again before
   * 'connected'.
   */
  disconnected: [error: EtcdClientError];
  /** The watch was re-created on a new stream after a disconnection. */
  connected: [];
  /**
   * The watch ended with an error (e.g. {@link CompactedError}, or AbortError for a watch made
   * after `client.close()`); 'end' follows. Only emitted when listened to.
   */
  error: [error: EtcdClientError];
  /** The watch ended (cancelled, client closed, or after 'error'). */
  end: [];
}

/** gRPC codes after which retrying the stream cannot help: the watchers end with the error. */
const HALT_CODES = new Set<Status>([Status.INVALID_ARGUMENT, Status.PERMISSION_DENIED, Status.UNIMPLEMENTED, Status.FAILED_PRECONDITION]);

/**
 * A watch: an AsyncIterable of {@link WatchResponse} and an event emitter (see
 * {@link WatcherEvents}). Iterating ends normally after `cancel()` or `client.close()`, and
 * throws the terminal error (e.g. {@link CompactedError}) otherwise. Responses are buffered
 * for the iterator once iteration started, or as long as no 'event'/'response' listener is
 * attached; a callback-only user therefore accumulates nothing.
 */
export class Watcher extends EventEmitter<WatcherEvents> implements AsyncIterable<WatchResponse> {
  /** Resolves at the first created acknowledgement; rejects if the watch ends before it. */
  readonly created: Promise<void>;
  /** The revision the next create request starts from; 0 = "now" (before the first ack). Changed only by the stream's response handler. */
  nextRev: bigint;
  /** The watch ID on the current stream; undefined while not registered. */
  watchId: bigint | undefined;
  /** True once cancelled, failed or closed. */
  ended = false;
  private readonly request: Omit<WatchCreateRequest, 'startRevision'>;
  private readonly stream: WatchStream;
  private acknowledged = false;
  /** Between a 'disconnected' and the next created acknowledgement. */
  private down = false;
  private resolveCreated!: () => void;
  private rejectCreated!: (err: Error) => void;
  private iterating = false;
  /** Responses not yet taken by the iterator. */
  private readonly queue: WatchResponse[] = [];
  /** The iterator's pending next(), waiting for a response or the end. */
  private wake: (() => void) | undefined;
  private failure: EtcdClientError | undefined;

  /** @internal Created by {@link Client.watch}. */
  constructor(stream: WatchStream, key: Bytes, options: WatchOptions) {
    super();
    this.stream = stream;
    this.nextRev = toBigInt(options.startRevision ?? 0);
    this.request = {
      ...keyRange(key, options),
      progressNotify: options.progressNotify ?? false,
      filters: (options.filters ?? []).map((f) => (f === 'noPut' ? WatchCreateRequest_FilterType.NOPUT : WatchCreateRequest_FilterType.NODELETE)),
      prevKv: options.prevKv ?? false,
      watchId: 0n,
      fragment: options.fragment ?? false,
    };
    this.created = new Promise<void>((resolve, reject) => {
      this.resolveCreated = resolve;
      this.rejectCreated = reject;
    });
    this.created.catch(() => undefined);
  }

  /** The revision of the last delivered event or per-watch progress (nextRev − 1); 0 before any. */
  get lastRevision(): bigint {
    return this.nextRev === 0n ? 0n : this.nextRev - 1n;
  }

  /** The create request for the current stream: resumes at nextRev. */
  createRequest(): WatchRequest {
    return { createRequest: { ...this.request, startRevision: this.nextRev } };
  }

  /**
   * Asks the server for a progress notification on this watch's stream; it arrives as a
   * 'progress' response to every watch of the group. No-op while disconnected.
   */
  requestProgress(): void {
    this.stream.requestProgress();
  }

  /**
   * Cancels the watch on the server (a cancel request, or closing the group's stream when this
   * was its last watch) and releases it: the iterator finishes and 'end' fires. Idempotent.
   */
  cancel(): Promise<void> {
    if (!this.ended) {
      this.stream.remove(this);
      this.finish(undefined);
    }
    return Promise.resolve();
  }

  /** @internal A created acknowledgement for this watcher. */
  onCreated(header: ResponseHeader, watchId: bigint): void {
    this.watchId = watchId;
    this.down = false;
    if (this.acknowledged) {
      this.emit('connected');
      return;
    }
    this.acknowledged = true;
    if (this.nextRev === 0n) this.nextRev = header.revision + 1n;
    this.resolveCreated();
    this.emit('created');
  }

  /** @internal Events (reassembled) or a progress notification for this watcher. */
  onResponse(header: ResponseHeader, events: WatchResponseMessage['events'], perWatchProgress: boolean): void {
    const fresh = events.filter((e) => e.kv !== undefined && e.kv.modRevision >= this.nextRev);
    if (events.length > 0 && fresh.length === 0) return;
    if (fresh.length > 0) {
      const last = fresh[fresh.length - 1]!.kv!.modRevision;
      this.nextRev = last + 1n;
    } else if (perWatchProgress && header.revision + 1n > this.nextRev) {
      // A per-watch progress notification at R: every event of this watch up to R was sent.
      this.nextRev = header.revision + 1n;
    }
    const response: WatchResponse = {
      header,
      events: fresh.map((e) => ({ type: e.type === Event_EventType.DELETE ? 'delete' : 'put', kv: e.kv!, prevKv: e.prevKv })),
      progressNotify: fresh.length === 0,
    };
    if (this.iterating || this.listenerCount('event') + this.listenerCount('response') === 0) {
      this.queue.push(response);
      this.wake?.();
    }
    this.emit('response', response);
    if (response.progressNotify) this.emit('progress', response);
    for (const event of response.events) this.emit('event', event, response);
  }

  /** @internal The stream broke; the watch stays and will be re-created. */
  onDisconnected(err: EtcdClientError): void {
    this.watchId = undefined;
    if (this.down) return;
    this.down = true;
    this.emit('disconnected', retriedError(err));
  }

  /** @internal Ends the watch: with `err` (emits 'error' when listened to, the iterator throws) or cleanly. */
  finish(err: EtcdClientError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.watchId = undefined;
    this.failure = err;
    this.rejectCreated(err ?? new EtcdClientError('watch ended before it was created'));
    if (err !== undefined && this.listenerCount('error') > 0) this.emit('error', err);
    this.emit('end');
    this.wake?.();
  }

  /**
   * Iterates the responses. Breaking out of the loop cancels the watch; the loop ends after
   * `cancel()` / `client.close()` and throws the terminal error (e.g. CompactedError).
   */
  [Symbol.asyncIterator](): AsyncIterator<WatchResponse> {
    this.iterating = true;
    return {
      next: async (): Promise<IteratorResult<WatchResponse>> => {
        for (;;) {
          const value = this.queue.shift();
          if (value !== undefined) return { done: false, value };
          if (this.ended) {
            if (this.failure !== undefined) throw this.failure;
            return { done: true, value: undefined };
          }
          await new Promise<void>((resolve) => { this.wake = resolve; });
          this.wake = undefined;
        }
      },
      return: async (): Promise<IteratorResult<WatchResponse>> => {
        await this.cancel();
        return { done: true, value: undefined };
      },
    };
  }
}

type WatchCall = ClientDuplexStream<WatchRequest, WatchResponseMessage>;

/** One gRPC Watch stream shared by the watchers of a group; see the state model above. */
export class WatchStream {
  private readonly connection: Connection;
  /** Called when the stream has no watchers left, so the client can forget it. */
  private readonly onIdle: () => void;
  /** Every live watcher of the group, registered or not, in creation order. */
  private readonly watchers = new Set<Watcher>();
  /** The current gRPC call; undefined while idle or backing off. */
  private call: WatchCall | undefined;
  private endpoint: Endpoint | undefined;
  /** Watchers whose create was written on `call` and not yet acknowledged, in write order. */
  private pendingCreates: Watcher[] = [];
  /** Registered watchers of `call` by watch ID. */
  private byId = new Map<bigint, Watcher>();
  /** Events of fragmented responses not yet complete, by watch ID. */
  private fragments = new Map<bigint, WatchResponseMessage['events']>();
  /** Whether `call` received a response (the connection works). */
  private open = false;
  /** Consecutive failed connection attempts. */
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Set while waiting for a connected endpoint and the auth token before opening a call; aborted by stop(). */
  private connecting: AbortController | undefined;
  /** The metadata `call` was opened with (its auth token). */
  private metadata: Metadata | undefined;
  private closed = false;

  constructor(connection: Connection, onIdle: () => void) {
    this.connection = connection;
    this.onIdle = onIdle;
  }

  /** Registers a new watcher: its create goes out now, or when the stream (re)connects. */
  add(watcher: Watcher): void {
    if (this.closed) {
      watcher.finish(undefined);
      return;
    }
    this.watchers.add(watcher);
    if (this.call !== undefined) this.sendCreate(this.call, watcher);
    else if (this.reconnectTimer === undefined && this.connecting === undefined) this.connect();
  }

  /**
   * Unregisters a watcher. While other watchers share the stream, a cancel request for its ID
   * is queued; when it was the last one, the stream itself is cancelled instead (as etcd's Go
   * client does), which frees every server-side watcher of the stream, and the group is
   * forgotten. (Half-closing is not enough: etcd keeps a half-closed watch stream open.)
   */
  remove(watcher: Watcher): void {
    this.watchers.delete(watcher);
    if (this.watchers.size === 0) {
      this.stop();
      this.onIdle();
      return;
    }
    const id = watcher.watchId;
    if (this.call === undefined || id === undefined) return;
    this.byId.delete(id);
    this.call.write({ cancelRequest: { watchId: id } });
  }

  /** Writes a progress request on the current stream (no-op while disconnected). */
  requestProgress(): void {
    this.call?.write({ progressRequest: {} });
  }

  /** Cancels the stream and ends every watcher cleanly. */
  close(): void {
    this.closed = true;
    this.stop();
    for (const w of [...this.watchers]) w.finish(undefined);
    this.watchers.clear();
  }

  /** Cancels the current call and forgets its state. */
  private stop(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.connecting?.abort();
    this.connecting = undefined;
    const call = this.call;
    this.call = undefined;
    this.reset();
    call?.cancel();
  }

  private reset(): void {
    this.pendingCreates = [];
    this.byId = new Map();
    this.fragments = new Map();
    this.open = false;
  }

  private sendCreate(call: WatchCall, watcher: Watcher): void {
    this.pendingCreates.push(watcher);
    call.write(watcher.createRequest());
  }

  /**
   * Opens a call on a connected endpoint (see `Connection.endpoint`), once the client has its
   * auth token (see `Connection.metadata`). A failed authentication is a disconnection; the
   * client's close ends every watcher with AbortError.
   */
  private connect(): void {
    this.reconnectTimer = undefined;
    const attempt = new AbortController();
    this.connecting = attempt;
    const signal = this.connection.abortSignal(attempt.signal);
    let endpoint: Endpoint | undefined;
    this.connection.endpoint(signal).then(async (ep) => {
      endpoint = ep;
      return this.connection.metadata(signal);
    }).then(
      (metadata) => {
        if (this.connecting !== attempt) return;
        this.connecting = undefined;
        this.openCall(endpoint!, metadata);
      },
      (err: unknown) => {
        if (this.connecting !== attempt) return;
        this.connecting = undefined;
        const typed = toClientError(err);
        if (typed instanceof AbortError) {
          for (const w of [...this.watchers]) this.drop(w, typed);
          return;
        }
        this.endpoint = endpoint;
        this.onBroken(typed);
      },
    );
  }

  private openCall(endpoint: Endpoint, metadata: Metadata): void {
    const call = endpoint.watch.watch(metadata);
    this.call = call;
    this.endpoint = endpoint;
    this.metadata = metadata;
    call.on('data', (res: WatchResponseMessage) => {
      if (this.call === call) this.onResponse(res);
    });
    call.on('error', (err) => {
      if (this.call === call) this.onBroken(toClientError(err));
    });
    call.on('end', () => {
      if (this.call === call) this.onBroken(new UnavailableError('watch stream ended by the server', { code: Status.UNAVAILABLE }));
    });
    for (const w of this.watchers) this.sendCreate(call, w);
  }

  private onResponse(res: WatchResponseMessage): void {
    if (!this.open) {
      this.open = true;
      this.attempt = 0;
      this.connection.markUp(this.endpoint!);
    }
    const header = res.header ?? { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n };
    if (res.created) {
      const watcher = this.pendingCreates.shift();
      if (watcher === undefined) return;
      if (watcher.ended) {
        if (!res.canceled && res.watchId >= 0n) this.call?.write({ cancelRequest: { watchId: res.watchId } });
        return;
      }
      if (res.canceled) {
        const err = cancelError(res);
        // A token that expired, or none while auth got enabled: reconnect with a new one (the
        // watcher stays and is created again on the new call).
        if (this.metadata !== undefined && this.connection.refusedToken(err, this.metadata)) {
          this.onBroken(new UnavailableError(err.message, { cause: err, code: Status.UNAVAILABLE }));
          return;
        }
        this.drop(watcher, err);
        return;
      }
      this.byId.set(res.watchId, watcher);
      watcher.onCreated(header, res.watchId);
      return;
    }
    if (res.watchId === -1n) {
      // A stream-wide progress notification (answer to a progress request): shown to every
      // watcher, but not used to advance resume points, since etcd 3.4 sends it even while
      // some watchers are still catching up.
      for (const w of this.byId.values()) w.onResponse(header, [], false);
      return;
    }
    const watcher = this.byId.get(res.watchId);
    if (watcher === undefined) return;
    if (res.canceled) {
      this.byId.delete(res.watchId);
      this.drop(watcher, cancelError(res));
      return;
    }
    if (res.fragment) {
      const pending = this.fragments.get(res.watchId) ?? [];
      pending.push(...res.events);
      this.fragments.set(res.watchId, pending);
      return;
    }
    const head = this.fragments.get(res.watchId);
    this.fragments.delete(res.watchId);
    const events = head === undefined ? res.events : [...head, ...res.events];
    watcher.onResponse(header, events, events.length === 0);
  }

  /** Ends one watcher with an error from the server. */
  private drop(watcher: Watcher, err: EtcdClientError): void {
    this.watchers.delete(watcher);
    watcher.finish(err);
    if (this.watchers.size === 0) {
      this.stop();
      this.onIdle();
    }
  }

  private onBroken(err: EtcdClientError): void {
    const call = this.call;
    const wasOpen = this.open;
    this.call = undefined;
    this.reset();
    call?.cancel();
    if (err.code !== undefined && HALT_CODES.has(err.code)) {
      for (const w of [...this.watchers]) this.drop(w, err);
      return;
    }
    if (!wasOpen && this.endpoint !== undefined) this.connection.markDown(this.endpoint);
    for (const w of this.watchers) w.onDisconnected(err);
    this.attempt++;
    const delay = this.connection.retryDelayMs(this.attempt);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }
}

/** The error a server-side cancellation carries: CompactedError when `compact_revision` is set. */
function cancelError(res: WatchResponseMessage): EtcdClientError {
  if (res.compactRevision > 0n) {
    return new CompactedError('etcdserver: mvcc: required revision has been compacted', res.compactRevision);
  }
  if (res.cancelReason === '') return new EtcdClientError('etcdserver: watch canceled');
  // A refused create carries the server's gRPC error as text: its code and etcd's message.
  const m = /^rpc error: code = (\w+) desc = (.*)$/s.exec(res.cancelReason);
  const code = m === null ? undefined : GRPC_CODES.get(m[1]!);
  return m === null || code === undefined ? new EtcdClientError(res.cancelReason) : toClientError({ code, details: m[2]! });
}

/** grpc-go's code names in error texts → codes. */
const GRPC_CODES: ReadonlyMap<string, Status> = new Map([
  ['InvalidArgument', Status.INVALID_ARGUMENT],
  ['PermissionDenied', Status.PERMISSION_DENIED],
  ['Unauthenticated', Status.UNAUTHENTICATED],
  ['FailedPrecondition', Status.FAILED_PRECONDITION],
]);
