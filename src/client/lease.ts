/**
 * The keep-alive helper: renews one lease over a LeaseKeepAlive stream every TTL/3, re-opens
 * the stream on the next endpoint after disconnections, and reports the loss of the lease.
 */
import { EventEmitter } from 'node:events';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { LeaseKeepAliveRequest, LeaseKeepAliveResponse } from '../proto/gen/rpc.gen.js';
import { callMetadata, type Connection } from './connection.js';
import { EtcdClientError, LeaseNotFoundError, toClientError } from './errors.js';

/** Options of {@link Client.keepAlive}. */
export interface KeepAliveOptions {
  /** Renew this often, in ms; default: a third of the TTL the server last reported (at least 500 ms). */
  intervalMs?: number;
}

/** Callbacks of a {@link LeaseKeepAlive}. */
export interface LeaseKeepAliveEvents {
  /** A renewal succeeded; `ttlSeconds` is the lease's fresh TTL. */
  renewed: [ttlSeconds: bigint];
  /** The stream broke; renewals resume on a new stream. */
  disconnected: [error: EtcdClientError];
  /** The lease is gone (revoked, expired, or not renewed within its TTL); the helper stopped. Fires once. */
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
  private timer: NodeJS.Timeout | undefined;
  /** Date.now() until which the lease is known to live (last renewal + its TTL); 0 before the first. */
  private expiresAtMs = 0;
  /** The TTL the server last reported, in seconds. */
  private ttlSeconds = 0n;
  private attempt = 0;
  private stopped = false;
  private reportLost!: (err: EtcdClientError) => void;

  /** @internal Created by {@link Client.keepAlive}. */
  constructor(connection: Connection, id: bigint, options: KeepAliveOptions = {}, onStop: () => void) {
    super();
    this.connection = connection;
    this.id = id;
    this.options = options;
    this.onStop = onStop;
    this.lost = new Promise((resolve) => { this.reportLost = resolve; });
    this.open();
  }

  /** Stops renewing (the lease then expires after its TTL unless revoked). Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.onStop();
  }

  private open(): void {
    const ep = this.connection.pick();
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
      this.expiresAtMs = Date.now() + Number(res.TTL) * 1000;
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
      this.emit('disconnected', err);
      if (this.expiresAtMs !== 0 && Date.now() >= this.expiresAtMs) {
        this.lose(new LeaseNotFoundError('lease expired while the keep-alive stream was down', { cause: err }));
        return;
      }
      this.attempt++;
      this.timer = setTimeout(() => this.open(), this.connection.retryDelayMs(this.attempt));
    };
    call.on('error', (err) => broken(toClientError(err)));
    call.on('end', () => broken(new EtcdClientError('keep-alive stream ended by the server')));
    call.write({ ID: this.id });
  }

  private schedule(renew: () => void): void {
    clearTimeout(this.timer);
    const interval = this.options.intervalMs ?? Math.max(500, (Number(this.ttlSeconds) * 1000) / 3);
    this.timer = setTimeout(renew, interval);
  }

  private lose(err: EtcdClientError): void {
    this.stop();
    this.reportLost(err);
    this.emit('lost', err);
  }
}
