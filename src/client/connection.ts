/**
 * The client's connections: one grpc-js Channel per endpoint, shared by the KV, Watch, Lease
 * and Maintenance stubs of that endpoint; round-robin endpoint choice that skips endpoints
 * that failed recently (each failure pushes the endpoint's next try out by a backoff); the
 * unary call wrapper that adds deadlines, AbortSignals, failover and typed errors; and, with
 * `auth`, the client's token (etcd clientv3's `getToken` / `refreshToken`).
 */
import { readFileSync } from 'node:fs';
import {
  Channel,
  credentials,
  Metadata,
  status as Status,
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  AuthClient,
  ClusterClient,
  KVClient,
  LeaseClient,
  MaintenanceClient,
  WatchClient,
  type AuthenticateRequest,
  type AuthenticateResponse,
} from '../proto/gen/rpc.gen.js';
import { backoffDelayMs, sleep, type BackoffOptions } from './backoff.js';
import { AbortError, InvalidAuthTokenError, toClientError, type EtcdClientError } from './errors.js';

/** Refusals besides InvalidAuthTokenError after which a new token may succeed. */
const TOKEN_REFUSALS = new Set(['etcdserver: user name is empty', 'etcdserver: revision of auth store is old']);

/** TLS material for `https://` endpoints: PEM contents (string/Buffer) or file paths. */
export interface ClientTlsOptions {
  /** CA bundle that signed the server certificate (PEM contents or a file path); default: Node's roots. */
  ca?: string | Buffer;
  /** Client certificate chain for client-cert auth (PEM contents or a file path). */
  cert?: string | Buffer;
  /** Private key of `cert` (PEM contents or a file path). */
  key?: string | Buffer;
}

/** Connection options of a {@link Client}. */
export interface ConnectionOptions {
  /**
   * Server URLs: `http://host:port` (plaintext) or `https://host:port` (TLS, see `tls`);
   * a bare `host:port` means `http://`. At least one.
   */
  endpoints: string[];
  /** TLS material for `https://` endpoints. */
  tls?: ClientTlsOptions;
  /** Default deadline of each unary call, in ms; per-call `timeoutMs` overrides. @default undefined (no deadline) */
  timeoutMs?: number;
  /** Interval of HTTP/2 keepalive pings, in ms. @default 30000 */
  keepaliveTimeMs?: number;
  /** How long to wait for a keepalive ping ack before the connection is considered dead, in ms. @default 10000 */
  keepaliveTimeoutMs?: number;
  /** Backoff between reconnects and retries. @default { initialMs: 50, maxMs: 2000 } */
  backoff?: BackoffOptions;
  /** Extra grpc-js channel options (e.g. `grpc.max_receive_message_length`). */
  grpcOptions?: ChannelOptions;
  /**
   * A user of etcd's auth (`etcdctl --user`): the client authenticates before its first call and
   * sends the token with every call and stream; a token the server refuses (expired, or auth
   * was re-enabled) is renewed once per call. While the server has auth disabled the client
   * sends no token. Wrong credentials fail calls with AuthFailedError.
   */
  auth?: { username: string; password: string };
}

/** Per-call options of every client method. */
export interface CallOptions {
  /** Deadline of this call, in ms from now; overrides the client's `timeoutMs`. */
  timeoutMs?: number;
  /** Aborts the call (the promise rejects with {@link AbortError}). */
  signal?: AbortSignal;
}

/** One endpoint: its channel, the service stubs on it, and its health bookkeeping. */
export class Endpoint {
  /** The URL as given (normalised to carry a scheme). */
  readonly url: string;
  readonly channel: Channel;
  readonly kv: KVClient;
  readonly watch: WatchClient;
  readonly lease: LeaseClient;
  readonly maintenance: MaintenanceClient;
  readonly cluster: ClusterClient;
  readonly auth: AuthClient;
  /** Consecutive failures; 0 when the last call or stream through it succeeded. */
  failures = 0;
  /** Date.now() before which the endpoint is skipped by round-robin. */
  downUntilMs = 0;

  constructor(url: string, creds: ChannelCredentials, options: ChannelOptions) {
    this.url = url;
    const target = new URL(url).host;
    this.channel = new Channel(target, creds, options);
    const shared = { channelOverride: this.channel };
    this.kv = new KVClient(target, creds, shared);
    this.watch = new WatchClient(target, creds, shared);
    this.lease = new LeaseClient(target, creds, shared);
    this.maintenance = new MaintenanceClient(target, creds, shared);
    this.cluster = new ClusterClient(target, creds, shared);
    this.auth = new AuthClient(target, creds, shared);
  }
}

const pem = (value: string | Buffer | undefined): Buffer | null => {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  return value.includes('-----BEGIN') ? Buffer.from(value) : readFileSync(value);
};

/** A grpc-js unary method of a generated client, in its (request, metadata, options, callback) form. */
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (err: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** A grpc-js server-streaming method of a generated client. */
type ServerStreamMethod<Req, Res> = (request: Req, metadata: Metadata, options?: Partial<GrpcCallOptions>) => ClientReadableStream<Res>;

/** The endpoints of one client and the policy to choose among them. */
export class Connection {
  readonly endpoints: Endpoint[];
  readonly options: ConnectionOptions;
  /** Index of the endpoint round-robin tries next. */
  private cursor = 0;
  /** Aborted by close(): ends retry sleeps and in-flight calls. */
  private readonly closing = new AbortController();
  /**
   * With `options.auth`: the token being fetched (`pending`) or used (`value`, '' while the
   * server has auth disabled); undefined = authenticate at the next call.
   */
  private token: { pending: Promise<string>; value?: string } | undefined;

  constructor(options: ConnectionOptions) {
    if (options.endpoints.length === 0) throw new TypeError('at least one endpoint is required');
    this.options = options;
    const channelOptions: ChannelOptions = {
      'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? 30_000,
      'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs ?? 10_000,
      'grpc.initial_reconnect_backoff_ms': options.backoff?.initialMs ?? 50,
      'grpc.max_reconnect_backoff_ms': options.backoff?.maxMs ?? 2000,
      'grpc.max_receive_message_length': -1,
      ...options.grpcOptions,
    };
    this.endpoints = options.endpoints.map((raw) => {
      const url = raw.includes('://') ? raw : `http://${raw}`;
      const scheme = new URL(url).protocol;
      if (scheme !== 'http:' && scheme !== 'https:') throw new TypeError(`unsupported endpoint scheme in ${raw}`);
      const creds = scheme === 'https:'
        ? credentials.createSsl(pem(options.tls?.ca), pem(options.tls?.key), pem(options.tls?.cert))
        : credentials.createInsecure();
      return new Endpoint(url, creds, channelOptions);
    });
  }

  /**
   * The next endpoint in round-robin order that is not backing off; when all are, the one whose
   * backoff ends first.
   */
  pick(): Endpoint {
    const now = Date.now();
    const n = this.endpoints.length;
    let best: Endpoint | undefined;
    for (let i = 0; i < n; i++) {
      const ep = this.endpoints[(this.cursor + i) % n]!;
      if (ep.downUntilMs <= now) {
        this.cursor = (this.cursor + i + 1) % n;
        return ep;
      }
      if (best === undefined || ep.downUntilMs < best.downUntilMs) best = ep;
    }
    this.cursor = (this.endpoints.indexOf(best!) + 1) % n;
    return best!;
  }

  /** Records a failure of `ep`: round-robin skips it for a backoff that grows with each failure. */
  markDown(ep: Endpoint): void {
    ep.failures++;
    ep.downUntilMs = Date.now() + backoffDelayMs(ep.failures, this.options.backoff);
  }

  /** Records a success of `ep`. */
  markUp(ep: Endpoint): void {
    ep.failures = 0;
    ep.downUntilMs = 0;
  }

  /** How long to wait before the next attempt when every endpoint failed `attempt` times in a row. */
  retryDelayMs(attempt: number): number {
    return backoffDelayMs(attempt, this.options.backoff);
  }

  /**
   * Runs one unary call with failover. `method` returns the stub method bound to its stub,
   * e.g. `(ep) => ep.kv.range.bind(ep.kv)`. A call that fails with UNAVAILABLE is retried on the
   * next endpoint (after a backoff once every endpoint failed) until the deadline, when either
   * it is `idempotent` or the failure says no connection was established (the request never
   * left the client). Other failures are thrown as typed errors.
   * @throws EtcdClientError subclasses (see errors.ts); AbortError when `signal` fires or the client closes.
   */
  async unary<Req, Res>(
    method: (ep: Endpoint) => UnaryMethod<Req, Res>,
    request: Req,
    callOptions: CallOptions | undefined,
    idempotent: boolean,
  ): Promise<Res> {
    return this.call(method, request, callOptions, idempotent, true);
  }

  /**
   * Runs one server-streaming call on the next endpoint and yields its messages. There is no
   * failover once a stream has begun (it cannot resume on another endpoint); a token the server
   * refuses before the first message is renewed once. Stopping the iteration cancels the call.
   * `timeoutMs` bounds the whole stream (none unless given).
   * @throws EtcdClientError subclasses as the stream fails; AbortError when `signal` fires or the client closes.
   */
  async *serverStream<Req, Res>(method: (ep: Endpoint) => ServerStreamMethod<Req, Res>, request: Req, callOptions: CallOptions | undefined): AsyncGenerator<Res> {
    const signal = this.callSignal(callOptions);
    const deadline = callOptions?.timeoutMs === undefined ? undefined : Date.now() + callOptions.timeoutMs;
    for (let renewed = false; ; renewed = true) {
      if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
      const ep = this.pick();
      const metadata = await this.metadata(signal);
      const call = method(ep)(request, metadata, deadline === undefined ? {} : { deadline });
      const onAbort = (): void => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      let received = false;
      try {
        for await (const message of call) {
          received = true;
          yield message as Res;
        }
        this.markUp(ep);
        return;
      } catch (err) {
        if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
        const typed = toClientError(err);
        if (!received && !renewed && this.refusedToken(typed, metadata)) continue;
        if (typed.code === Status.UNAVAILABLE) this.markDown(ep);
        throw typed;
      } finally {
        signal.removeEventListener('abort', onAbort);
        call.cancel();
      }
    }
  }

  /** What ends a call: the caller's `signal`, if any, or the client's close. */
  private callSignal(callOptions: CallOptions | undefined): AbortSignal {
    return callOptions?.signal === undefined ? this.closing.signal : AbortSignal.any([callOptions.signal, this.closing.signal]);
  }

  /** `unary`, with the auth token in the metadata when `withToken` and the client has credentials. */
  private async call<Req, Res>(
    method: (ep: Endpoint) => UnaryMethod<Req, Res>,
    request: Req,
    callOptions: CallOptions | undefined,
    idempotent: boolean,
    withToken: boolean,
  ): Promise<Res> {
    const timeoutMs = callOptions?.timeoutMs ?? this.options.timeoutMs;
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const signal = this.callSignal(callOptions);
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
      const ep = this.pick();
      const metadata = withToken ? await this.metadata(signal) : callMetadata();
      try {
        const response = await invoke(method(ep), request, metadata, deadline, signal);
        this.markUp(ep);
        return response;
      } catch (err) {
        const typed = toClientError(err);
        if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
        if (withToken && !renewed && this.refusedToken(typed, metadata)) {
          renewed = true;
          continue;
        }
        const notSent = typed.code === Status.UNAVAILABLE && /No connection established|ECONNREFUSED/.test(typed.message);
        const retry = typed.code === Status.UNAVAILABLE && (idempotent || notSent);
        if (!retry || (deadline !== undefined && Date.now() >= deadline)) throw typed;
        this.markDown(ep);
        if (attempt % this.endpoints.length === 0) {
          const wait = this.retryDelayMs(attempt / this.endpoints.length);
          if (deadline !== undefined && Date.now() + wait >= deadline) throw typed;
          await sleep(wait, signal).catch(() => undefined);
        }
      }
    }
  }

  /**
   * The metadata of a call or stream: `client-api-version`, and the token when the client has
   * credentials (authenticating first when it has no token yet, with the client's default
   * deadline; `signal` stops only this caller's wait).
   * @throws AuthFailedError for wrong credentials; AbortError when `signal` fires; the errors of `unary` otherwise.
   */
  async metadata(signal?: AbortSignal): Promise<Metadata> {
    const metadata = callMetadata();
    const auth = this.options.auth;
    if (auth === undefined) return metadata;
    if (this.token === undefined) {
      const entry: { pending: Promise<string>; value?: string } = { pending: this.authenticate(auth) };
      this.token = entry;
      entry.pending.then(
        (value) => (entry.value = value),
        () => {
          if (this.token === entry) this.token = undefined;
        },
      );
    }
    const token = signal === undefined ? await this.token.pending : await abortable(this.token.pending, signal);
    if (token !== '') metadata.set('token', token);
    return metadata;
  }

  /** The metadata of a call when it needs no waiting (no credentials, or a token at hand), else undefined. */
  readyMetadata(): Metadata | undefined {
    if (this.options.auth === undefined) return callMetadata();
    const token = this.token?.value;
    if (token === undefined) return undefined;
    const metadata = callMetadata();
    if (token !== '') metadata.set('token', token);
    return metadata;
  }

  /** etcd clientv3 `getToken`: Authenticate; '' when the server has auth disabled. */
  private async authenticate(auth: { username: string; password: string }): Promise<string> {
    const method = (ep: Endpoint) => ep.auth.authenticate.bind(ep.auth) as UnaryMethod<AuthenticateRequest, AuthenticateResponse>;
    try {
      return (await this.call(method, { name: auth.username, password: auth.password }, undefined, true, false)).token;
    } catch (err) {
      if (err instanceof Error && err.message === 'etcdserver: authentication is not enabled') return '';
      throw err;
    }
  }

  /**
   * True when the server refused the token `metadata` carried (invalid, expired, or a JWT
   * older than the server's last change of users, roles or permissions), or wanted one that
   * was not sent (auth enabled since): the token is forgotten, so the retry authenticates
   * again (clientv3's `shouldRefreshToken`).
   */
  refusedToken(err: EtcdClientError, metadata: Metadata): boolean {
    if (this.options.auth === undefined) return false;
    if (!(err instanceof InvalidAuthTokenError) && !TOKEN_REFUSALS.has(err.message)) return false;
    // Another call may have renewed it meanwhile: only the token this call sent is dropped.
    if (this.token?.value === (metadata.get('token')[0] ?? '')) this.token = undefined;
    return true;
  }

  /** Closes every channel; in-flight calls fail with AbortError. Idempotent. */
  close(): void {
    if (this.closing.signal.aborted) return;
    this.closing.abort(new AbortError('client closed'));
    for (const ep of this.endpoints) ep.channel.close();
  }
}

/** The etcd API version clientv3 3.4 announces on every call; etcd counts calls by it (`etcd_server_client_requests_total`). */
const CLIENT_API_VERSION = '3.4';

/** The metadata of one call: `client-api-version`, as clientv3's interceptors add it to every call. */
export function callMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set('client-api-version', CLIENT_API_VERSION);
  return metadata;
}

/** `promise`, or AbortError as soon as `signal` fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new AbortError('call aborted', { cause: signal.reason }));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError('call aborted', { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function invoke<Req, Res>(fn: UnaryMethod<Req, Res>, request: Req, metadata: Metadata, deadline: number | undefined, signal: AbortSignal): Promise<Res> {
  return new Promise((resolve, reject) => {
    const options: Partial<GrpcCallOptions> = deadline === undefined ? {} : { deadline };
    const call = fn(request, metadata, options, (err, response) => {
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(response);
    });
    const onAbort = (): void => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

