// A thin gRPC client for watch tests: the generated KVClient / WatchClient over grpc-js, an
// embedded etcd-ts on port 0 with a temp data dir, and a WatchSession that records every
// WatchResponse of one bidi stream so that tests can assert on the exact sequence.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { defaultConfig, type ServerConfig } from '../../src/config.js';
import {
  KVClient,
  WatchClient,
  WatchCreateRequest_FilterType,
  type CompactionResponse,
  type DeleteRangeResponse,
  type PutResponse,
  type RangeResponse,
  type WatchCreateRequest,
  type WatchRequest,
  type WatchResponse,
} from '../../src/proto/gen/rpc.gen.js';
import { startEtcd, type RunningServer } from '../../src/server/embed.js';

export { WatchCreateRequest_FilterType };

/** Calls a callback-style grpc-js client method as a promise. */
export function call<Req, Res>(fn: (req: Req, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res))));
}

/** An embedded etcd-ts with its data dir; `restart()` reopens the same data dir. */
export class EmbeddedServer {
  server!: RunningServer;
  readonly dataDir: string;
  private readonly overrides: Partial<ServerConfig>;

  private constructor(overrides: Partial<ServerConfig>) {
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-watch-'));
    this.overrides = overrides;
  }

  static async start(overrides: Partial<ServerConfig> = {}): Promise<EmbeddedServer> {
    const s = new EmbeddedServer(overrides);
    await s.open();
    return s;
  }

  private async open(): Promise<void> {
    const config: ServerConfig = {
      ...defaultConfig(),
      dataDir: this.dataDir,
      listenClientUrls: ['http://127.0.0.1:0'],
      advertiseClientUrls: ['http://127.0.0.1:0'],
      listenPeerUrls: [],
      ...this.overrides,
    };
    this.server = await startEtcd(config, pino({ level: 'silent' }));
  }

  /** host:port of the client URL. */
  get target(): string {
    return this.server.clientUrls[0]!.replace('http://', '');
  }

  async restart(): Promise<void> {
    await this.server.close();
    // Bind a new port: the old one may linger in TIME_WAIT for clients that still point at it.
    await this.open();
  }

  async stop(): Promise<void> {
    await this.server.close();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** KV helpers over one KVClient. */
export class Kv {
  readonly client: KVClient;
  constructor(target: string) {
    this.client = new KVClient(target, credentials.createInsecure());
  }
  put(key: string, value: string | Buffer): Promise<PutResponse> {
    return call(this.client.put.bind(this.client), { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });
  }
  del(key: string): Promise<DeleteRangeResponse> {
    return call(this.client.deleteRange.bind(this.client), { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), prevKv: false });
  }
  get(key: string): Promise<RangeResponse> {
    return call(this.client.range.bind(this.client), {
      key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, sortOrder: 0, sortTarget: 0, serializable: false,
      keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n,
    });
  }
  async rev(): Promise<number> {
    return Number((await this.get('\0')).header!.revision);
  }
  compact(revision: number, physical = true): Promise<CompactionResponse> {
    return call(this.client.compact.bind(this.client), { revision: BigInt(revision), physical });
  }
  close(): void {
    this.client.close();
  }
}

/** The key range of a prefix (etcd `GetPrefixRangeEnd`). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = b.subarray(0, i + 1);
      end[i]!++;
      return Buffer.from(end);
    }
  }
  return Buffer.from([0]);
}

/** A create request with etcd's defaults and `opts` applied. */
export function createRequest(key: string, opts: Partial<WatchCreateRequest> = {}): WatchRequest {
  return {
    createRequest: {
      key: Buffer.from(key), rangeEnd: Buffer.alloc(0), startRevision: 0n, progressNotify: false, filters: [], prevKv: false, watchId: 0n, fragment: false,
      ...opts,
    },
  };
}

/** A progress response as etcd sends it: no events and neither created nor canceled. */
export function isProgress(r: WatchResponse): boolean {
  return r.events.length === 0 && !r.created && !r.canceled && !r.fragment;
}

/** One Watch bidi stream whose responses are recorded in arrival order. */
export class WatchSession {
  readonly client: WatchClient;
  readonly stream: ClientDuplexStream<WatchRequest, WatchResponse>;
  /** Every response received, in order. */
  readonly responses: WatchResponse[] = [];
  /** Set when the stream ended or failed. */
  error: Error | undefined;
  ended = false;
  private waiters: (() => void)[] = [];

  constructor(target: string, client?: WatchClient) {
    this.client = client ?? new WatchClient(target, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    this.stream = this.client.watch();
    this.stream.on('data', (r: WatchResponse) => {
      this.responses.push(r);
      this.wake();
    });
    this.stream.on('error', (err: Error) => {
      this.error = err;
      this.wake();
    });
    this.stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  send(req: WatchRequest): void {
    this.stream.write(req);
  }

  create(key: string, opts: Partial<WatchCreateRequest> = {}): void {
    this.send(createRequest(key, opts));
  }

  cancel(watchId: bigint | number): void {
    this.send({ cancelRequest: { watchId: BigInt(watchId) } });
  }

  progress(): void {
    this.send({ progressRequest: {} });
  }

  /** Resolves once `pred(responses)` holds; rejects after `timeoutMs` (a hang guard, not a timing assertion). */
  async waitFor(pred: (rs: WatchResponse[]) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.responses)) {
      if (this.error) throw new Error(`stream failed while waiting for ${what}: ${this.error.message}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.responses.length} responses`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the `n`-th created response (1-based) and returns its watch ID. */
  async created(n = 1): Promise<bigint> {
    await this.waitFor((rs) => rs.filter((r) => r.created).length >= n, `${n} created responses`);
    return this.responses.filter((r) => r.created)[n - 1]!.watchId;
  }

  /** How many events `watchId` received: cheap enough to poll while large values arrive (`events` decodes each). */
  eventCount(watchId: bigint): number {
    let n = 0;
    for (const r of this.responses) if (r.watchId === watchId) n += r.events.length;
    return n;
  }

  /** The events received by `watchId`, as [revision, type, key] in order. */
  events(watchId: bigint): { rev: number; type: 'PUT' | 'DELETE'; key: string; value: string }[] {
    const out: { rev: number; type: 'PUT' | 'DELETE'; key: string; value: string }[] = [];
    for (const r of this.responses) {
      if (r.watchId !== watchId) continue;
      for (const e of r.events) {
        out.push({ rev: Number(e.kv!.modRevision), type: e.type === 1 ? 'DELETE' : 'PUT', key: e.kv!.key.toString(), value: e.kv!.value.toString() });
      }
    }
    return out;
  }

  /** Ends the stream and closes the client's channel. */
  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}
