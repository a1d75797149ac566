/**
 * The keep-alive helper: renews one lease over a LeaseKeepAlive stream every TTL/3, re-opens
 * the stream on the next endpoint after disconnections, and reports the loss of the lease:
 * when the server says it is gone, or, as clientv3's `deadlineLoop`, when no renewal
 * succeeded for the lease's TTL (whether the stream broke or just went silent).
 */
import { EventEmitter } from 'node:events';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { LeaseKeepAliveRequest, LeaseKeepAliveResponse } from '../proto/gen/rpc.gen.js';
import { callMetadata, type Connection, type Endpoint } from './connection.js';
import { EtcdClientError, LeaseNotFoundError, retriedError, toClientError, UnavailableError } from './errors.js';

/** Options of {@link Client.keepAlive}. */
export interface KeepAliveOptions {
  /** Renew this often, in ms; default: a third of the TTL the server last reported (at least 500 ms). */
  intervalMs?: number;
}

/** Callbacks of a {@link LeaseKeepAlive}. */
export interface LeaseKeepAliveEvents {
  /** A renewal succeeded; `ttlSeconds` is the lease's fresh TTL. */
  renewed: [ttlSeconds: bigint];
  /**
   * The stream broke; renewals resume on a new stream (the error is `retryable`). Once per
   * outage: failed reconnection attempts do not fire it again before the next 'renewed'.
   */
  disconnected: [error: EtcdClientError];
  /**
   * The lease is gone or can no longer be assumed alive; the helper stopped. Fires once, with
   * LeaseNotFoundError (revoked or expired on the server, or no successful renewal within its
   * TTL since the last one: clientv3's keep-alive deadline), or AbortError when the client was
   * closed (before the keep-alive started or while it ran).
   */
  lost: [error: EtcdClientError];
}

/** A running keep-alive of one lease (see {@link Client.keepAlive}). */
export class LeaseKeepAlive extends EventEmitter<LeaseKeepAliveEvents> {
  /** The lease ID. */
  readonly id: bigint;
  /** Resolves with the error when the lease is lost; never rejects. */
  readonly lost: Promise<EtcdClientError>;
  private readonly connection: Connection;
  private readonly options: KeepAliveOptions;
  private readonly onStop: () => void;
  private call: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | undefined;
  /** The next renewal, or the next attempt to open a stream. */
  private timer: NodeJS.Timeout | undefined;
  /** Fires `lost` when the lease's TTL passed since the last renewal (see `extendDeadline`). */
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** The last disconnection, the cause of a deadline loss. */
  private lastError: EtcdClientError | undefined;
  /** The TTL the server last reported, in seconds. */
  private ttlSeconds = 0n;
  private attempt = 0;
  private stopped = false;
  /** Aborted by stop(): ends the wait for a connected endpoint. */
  private readonly stopping = new AbortController();
  private reportLost!: (err: EtcdClientError) => void;

  /**
   * @internal Created by {@link Client.keepAlive}. The first renewal must succeed within the
   * connection's dial timeout + 1 s (clientv3's `firstKeepAliveTimeout`), each next one within
   * the TTL of the previous one.
   */
  constructor(connection: Connection, id: bigint, options: KeepAliveOptions = {}, onStop: () => void) {
    super();
    this.connection = connection;
    this.id = id;
    this.options = options;
    this.onStop = onStop;
    this.lost = new Promise((resolve) => { this.reportLost = resolve; });
    this.extendDeadline(connection.dialTimeoutMs + 1000);
    this.open();
  }

  /** Stops renewing (the lease then expires after its TTL unless revoked). Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.deadlineTimer);
    this.stopping.abort();
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.onStop();
  }

  /** Opens a stream on the next connected endpoint; loses the lease with AbortError when the client is closed. */
  private open(): void {
    this.connection.endpoint(this.connection.abortSignal(this.stopping.signal)).then(
      (ep) => {
        if (!this.stopped) this.stream(ep);
      },
      (err: unknown) => {
        if (!this.stopped) this.lose(toClientError(err));
      },
    );
  }

  private stream(ep: Endpoint): void {
    const call = ep.lease.leaseKeepAlive(callMetadata());
    this.call = call;
    call.on('data', (res: LeaseKeepAliveResponse) => {
      if (this.call !== call) return;
      this.attempt = 0;
      this.connection.markUp(ep);
      if (res.TTL <= 0n) {
        this.lose(new LeaseNotFoundError('etcdserver: requested lease not found'));
        return;
      }
      this.ttlSeconds = res.TTL;
      this.lastError = undefined;
      this.extendDeadline(Number(res.TTL) * 1000);
      this.emit('renewed', res.TTL);
      this.schedule(() => call.write({ ID: this.id }));
    });
    const broken = (err: EtcdClientError): void => {
      if (this.call !== call) return;
      this.call = undefined;
      call.cancel();
      if (err instanceof LeaseNotFoundError) {
        this.lose(err);
        return;
      }
      this.connection.markDown(ep);
      const first = this.lastError === undefined;
      this.lastError = retriedError(err);
      if (first) this.emit('disconnected', this.lastError);
      this.attempt++;
      this.timer = setTimeout(() => this.open(), this.connection.retryDelayMs(this.attempt));
    };
    call.on('error', (err) => broken(toClientError(err)));
    call.on('end', () => broken(new UnavailableError('keep-alive stream ended by the server')));
    call.write({ ID: this.id });
  }

  /** Loses the lease if no renewal succeeds within `ms` from now (clientv3's keep-alive deadline). */
  private extendDeadline(ms: number): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => {
      this.lose(new LeaseNotFoundError(`keep-alive deadline passed: no renewal within ${ms} ms`, { cause: this.lastError }));
    }, ms);
  }

  private schedule(renew: () => void): void {
    clearTimeout(this.timer);
    const interval = this.options.intervalMs ?? Math.max(500, (Number(this.ttlSeconds) * 1000) / 3);
    this.timer = setTimeout(renew, interval);
  }

  /** @internal Stops renewing and reports the lease lost with `err` (AbortError from `Client.close()`). */
  lose(err: EtcdClientError): void {
    if (this.stopped) return;
    this.stop();
    this.reportLost(err);
    this.emit('lost', err);
  }
}
