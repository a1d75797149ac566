/**
 * The client's connections: one grpc-js Channel per endpoint, shared by the KV, Watch, Lease
 * and Maintenance stubs of that endpoint; round-robin endpoint choice, as clientv3's balancer,
 * over the endpoints whose connection is established (among them, those that did not fail
 * recently first: each failure pushes the endpoint back by a backoff), with a dial timeout
 * that ends connection attempts stuck before the server's HTTP/2 SETTINGS; the unary call
 * wrapper that adds deadlines, AbortSignals, failover and typed errors; and, with `auth`, the
 * client's token (etcd clientv3's `getToken` / `refreshToken`).
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import {
  Channel,
  ChannelCredentials,
  connectivityState as State,
  credentials,
  Metadata,
  status as Status,
  type CallOptions as GrpcCallOptions,
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
import { AbortError, DeadlineExceededError, InvalidAuthTokenError, toClientError, type EtcdClientError } from './errors.js';

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
   * `unix://path` or `unixs://path` for a unix socket (etcd's form: `unix://localhost:2379` is
   * the socket file `localhost:2379` in the working directory); a bare `host:port` means
   * `http://`. At least one.
   */
  endpoints: string[];
  /** TLS material for `https://` endpoints. */
  tls?: ClientTlsOptions;
  /** Default deadline of each unary call, in ms; per-call `timeoutMs` overrides. @default undefined (no deadline) */
  timeoutMs?: number;
  /**
   * How long a connection attempt to an endpoint may stay between TCP connect and the
   * server's HTTP/2 SETTINGS (TLS and HTTP/2 handshakes), in ms, before it is abandoned and
   * the endpoint is dialled again (after grpc-js's reconnect backoff). Calls and streams only
   * go to endpoints whose connection is established, so a stalled endpoint (a stopped
   * process, a listener that never answers) is routed around, and reconnected when it
   * answers again. Also the first keep-alive's grace period (this + 1 s, see
   * {@link Client.keepAlive}). Mirrors clientv3's `DialTimeout`.
   * @default 5000
   */
  dialTimeoutMs?: number;
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

/** The grpc-js per-connection-attempt hook of ChannelCredentials (`SecureConnector`). */
type SecureConnector = ReturnType<ChannelCredentials['_createSecureConnector']>;

/**
 * Channel credentials that show each connection attempt's TCP socket to `onSocket` before the
 * TLS and HTTP/2 handshakes, so that an attempt stuck there can be ended: grpc-js has no
 * connect timeout and waits for the server's SETTINGS forever. Delegates everything to
 * grpc-js's own credentials through `_createSecureConnector`, which grpc-js (≥ 1.12) calls once
 * per attempt.
 */
class DialTrackingCredentials extends ChannelCredentials {
  private readonly inner: ChannelCredentials;
  private readonly onSocket: (socket: Socket) => void;

  constructor(inner: ChannelCredentials, onSocket: (socket: Socket) => void) {
    super();
    this.inner = inner;
    this.onSocket = onSocket;
  }

  _isSecure(): boolean {
    return this.inner._isSecure();
  }

  _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(...args: Parameters<ChannelCredentials['_createSecureConnector']>): SecureConnector {
    const connector = this.inner._createSecureConnector(...args);
    return {
      connect: (socket) => {
        this.onSocket(socket);
        return connector.connect(socket);
      },
      waitForReady: () => connector.waitForReady(),
      getCallCredentials: () => connector.getCallCredentials(),
      destroy: () => connector.destroy(),
    };
  }
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
  /** The TCP socket of the latest connection attempt, until the channel is READY or it closes. */
  private attemptSocket: Socket | undefined;
  /** Ends the connection attempt in progress after the dial timeout. */
  private dialTimer: NodeJS.Timeout | undefined;
  private readonly dialTimeoutMs: number;
  private readonly onStateChange: () => void;

  /**
   * @param dialTimeoutMs see {@link ConnectionOptions.dialTimeoutMs}.
   * @param onStateChange called after every change of the channel's connectivity state.
   */
  constructor(url: string, creds: ChannelCredentials, options: ChannelOptions, dialTimeoutMs: number, onStateChange: () => void) {
    this.url = url;
    this.dialTimeoutMs = dialTimeoutMs;
    this.onStateChange = onStateChange;
    const u = new URL(url);
    // etcd's unix://host:port names the socket file `host:port` (relative to the working directory).
    const target = u.protocol === 'unix:' || u.protocol === 'unixs:' ? `unix:${u.host}${u.pathname}` : u.host;
    this.channel = new Channel(target, new DialTrackingCredentials(creds, (socket) => this.trackAttempt(socket)), options);
    const shared = { channelOverride: this.channel };
    this.kv = new KVClient(target, creds, shared);
    this.watch = new WatchClient(target, creds, shared);
    this.lease = new LeaseClient(target, creds, shared);
    this.maintenance = new MaintenanceClient(target, creds, shared);
    this.cluster = new ClusterClient(target, creds, shared);
    this.auth = new AuthClient(target, creds, shared);
    this.followState();
  }

  /** The channel's connectivity state; an IDLE channel is asked to connect (clientv3 dials every endpoint). */
  state(): State {
    const state = this.channel.getConnectivityState(false);
    if (state === State.IDLE) this.channel.getConnectivityState(true);
    return state;
  }

  /**
   * Times one connection attempt from its TCP connect: its socket is destroyed when the channel
   * is not READY after the dial timeout (grpc-js then reports the attempt failed and dials again
   * after its backoff). Every attempt is timed, also those grpc-js makes while the channel stays
   * in TRANSIENT_FAILURE after an earlier one failed.
   */
  private trackAttempt(socket: Socket): void {
    clearTimeout(this.dialTimer);
    this.attemptSocket = socket;
    this.dialTimer = setTimeout(() => {
      this.dialTimer = undefined;
      socket.destroy();
    }, this.dialTimeoutMs).unref();
    socket.once('close', () => {
      if (this.attemptSocket !== socket) return;
      clearTimeout(this.dialTimer);
      this.dialTimer = undefined;
      this.attemptSocket = undefined;
    });
  }

  /**
   * Follows the channel's state until it is shut down, reporting each change to
   * `onStateChange`; a READY channel's attempt is no longer timed.
   */
  private followState(): void {
    const state = this.channel.getConnectivityState(false);
    if (state === State.READY || state === State.SHUTDOWN) {
      clearTimeout(this.dialTimer);
      this.dialTimer = undefined;
      this.attemptSocket = undefined;
      if (state === State.SHUTDOWN) return;
    }
    this.channel.watchConnectivityState(state, Infinity, () => {
      this.followState();
      this.onStateChange();
    });
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
  /** See {@link ConnectionOptions.dialTimeoutMs}. */
  readonly dialTimeoutMs: number;
  /** Index of the endpoint round-robin tries next. */
  private cursor = 0;
  /** Aborted by close(): ends retry sleeps, waits for a connection and in-flight calls. */
  private readonly closing = new AbortController();
  /** Callers of `endpoint()` waiting for a change of some endpoint's connectivity state. */
  private readonly stateWaiters = new Set<() => void>();
  /**
   * With `options.auth`: the token being fetched (`pending`) or used (`value`, '' while the
   * server has auth disabled); undefined = authenticate at the next call.
   */
  private token: { pending: Promise<string>; value?: string } | undefined;

  constructor(options: ConnectionOptions) {
    if (options.endpoints.length === 0) throw new TypeError('at least one endpoint is required');
    this.options = options;
    this.dialTimeoutMs = options.dialTimeoutMs ?? 5000;
    // Every in-flight call without a signal of its own listens to it: no listener limit.
    setMaxListeners(0, this.closing.signal);
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
      if (!['http:', 'https:', 'unix:', 'unixs:'].includes(scheme)) throw new TypeError(`unsupported endpoint scheme in ${raw}`);
      const creds = scheme === 'https:' || scheme === 'unixs:'
        ? credentials.createSsl(pem(options.tls?.ca), pem(options.tls?.key), pem(options.tls?.cert))
        : credentials.createInsecure();
      return new Endpoint(url, creds, channelOptions, this.dialTimeoutMs, () => {
        for (const wake of [...this.stateWaiters]) wake();
      });
    });
  }

  /**
   * The endpoint for the next call or stream, chosen as clientv3's balancer does: round-robin
   * over the endpoints whose connection is established (READY). While none is, it waits for
   * one (every endpoint is being dialled; see `dialTimeoutMs`), until `deadline`; when every
   * endpoint's last connection attempt failed (TRANSIENT_FAILURE), it returns one at once, so
   * that the call fails fast with UNAVAILABLE (and is retried by `unary`).
   * @param signal ends the wait (see `abortSignal`).
   * @param deadline Date.now() after which to stop waiting; none = wait as long as it takes.
   * @throws AbortError when `signal` fires; DeadlineExceededError when `deadline` passes first.
   */
  async endpoint(signal: AbortSignal, deadline?: number): Promise<Endpoint> {
    for (;;) {
      if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
      const states = this.endpoints.map((ep) => ep.state());
      const ready = this.endpoints.filter((_, i) => states[i] === State.READY);
      if (ready.length > 0) return this.roundRobin(ready);
      if (states.every((s) => s === State.TRANSIENT_FAILURE)) return this.roundRobin(this.endpoints);
      if (deadline !== undefined && Date.now() >= deadline) {
        throw new DeadlineExceededError('context deadline exceeded: no connection to any endpoint', { code: Status.DEADLINE_EXCEEDED });
      }
      await this.stateChange(signal, deadline);
    }
  }

  /**
   * The next of `candidates` in round-robin order that is not backing off; when all are, the
   * one whose backoff ends first.
   */
  private roundRobin(candidates: Endpoint[]): Endpoint {
    const now = Date.now();
    const n = this.endpoints.length;
    let best: Endpoint | undefined;
    for (let i = 0; i < n; i++) {
      const ep = this.endpoints[(this.cursor + i) % n]!;
      if (!candidates.includes(ep)) continue;
      if (ep.downUntilMs <= now) {
        best = ep;
        break;
      }
      if (best === undefined || ep.downUntilMs < best.downUntilMs) best = ep;
    }
    this.cursor = (this.endpoints.indexOf(best!) + 1) % n;
    return best!;
  }

  /**
   * Resolves at the next change of some endpoint's connectivity state, at `deadline`, or when
   * `signal` fires; at the latest after the dial timeout, since its (ref'd) timer is what keeps
   * the process alive while grpc-js connects (its sockets are unref'd).
   */
  private stateChange(signal: AbortSignal, deadline: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      const wait = Math.min(this.dialTimeoutMs, deadline === undefined ? Infinity : deadline - Date.now());
      const timer = setTimeout(() => done(), wait);
      const done = (): void => {
        clearTimeout(timer);
        this.stateWaiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.stateWaiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
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
   * e.g. `(ep) => ep.kv.range.bind(ep.kv)`. The call goes to a connected endpoint (see
   * `endpoint()`). A call that fails with UNAVAILABLE is retried on the next endpoint (after a
   * backoff once every endpoint failed) until the deadline, when either it is `idempotent` or
   * the failure says no connection was established (the request never left the client); at
   * the deadline it fails with DeadlineExceededError (`cause`: the last failure), as clientv3's
   * retry interceptor does. Other failures are thrown as typed errors; an endpoint that let a
   * call run into its deadline (e.g. a stopped server on an open connection) is marked down,
   * so the next calls prefer the other connected endpoints.
   * @throws EtcdClientError subclasses (see errors.ts); DeadlineExceededError when the deadline
   *   passes (also while waiting for a connection or the auth token); AbortError when `signal`
   *   fires or the client closes.
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
   * Runs one server-streaming call on the next connected endpoint (see `endpoint()`) and yields its messages. There is no
   * failover once a stream has begun (it cannot resume on another endpoint); a token the server
   * refuses before the first message is renewed once. Stopping the iteration cancels the call.
   * `timeoutMs` bounds the whole stream (none unless given).
   * @throws EtcdClientError subclasses as the stream fails; DeadlineExceededError when `timeoutMs`
   *   passes (also before a connection or the auth token); AbortError when `signal` fires or the client closes.
   */
  async *serverStream<Req, Res>(method: (ep: Endpoint) => ServerStreamMethod<Req, Res>, request: Req, callOptions: CallOptions | undefined): AsyncGenerator<Res> {
    const signal = this.abortSignal(callOptions?.signal);
    const deadline = callOptions?.timeoutMs === undefined ? undefined : Date.now() + callOptions.timeoutMs;
    for (let renewed = false; ; renewed = true) {
      if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
      const ep = await this.endpoint(signal, deadline);
      const metadata = await this.metadata(signal, deadline);
      if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
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

  /** What ends a call or stream: `signal`, if any, or the client's close. */
  abortSignal(signal: AbortSignal | undefined): AbortSignal {
    return signal === undefined ? this.closing.signal : AbortSignal.any([signal, this.closing.signal]);
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
    const signal = this.abortSignal(callOptions?.signal);
    let renewed = false;
    /** The last failure that was retried: the cause of the deadline error. */
    let last: EtcdClientError | undefined;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) throw new AbortError('call aborted', { cause: signal.reason });
      if (deadline !== undefined && Date.now() >= deadline && last !== undefined) {
        throw new DeadlineExceededError(`context deadline exceeded; last error: ${last.message}`, { cause: last, code: Status.DEADLINE_EXCEEDED });
      }
      const ep = await this.endpoint(signal, deadline);
      const metadata = withToken ? await this.metadata(signal, deadline) : callMetadata();
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
        if (!retry) {
          // A stopped server keeps its connection READY: let the next calls try another endpoint first.
          if (typed instanceof DeadlineExceededError) this.markDown(ep);
          throw typed;
        }
        last = typed;
        this.markDown(ep);
        if (attempt % this.endpoints.length === 0) {
          const wait = this.retryDelayMs(attempt / this.endpoints.length);
          await sleep(deadline === undefined ? wait : Math.min(wait, deadline - Date.now()), signal).catch(() => undefined);
        }
      }
    }
  }

  /**
   * The metadata of a call or stream: `client-api-version`, and the token when the client has
   * credentials (authenticating first when it has no token yet, with the client's default
   * deadline; `signal` and `deadline` end only this caller's wait).
   * @throws AuthFailedError for wrong credentials; AbortError when `signal` fires;
   *   DeadlineExceededError when `deadline` (a Date.now() value) passes first; the errors of `unary` otherwise.
   */
  async metadata(signal: AbortSignal, deadline?: number): Promise<Metadata> {
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
    const token = this.token.value ?? await bounded(this.token.pending, signal, deadline);
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

/** `promise`, or AbortError as soon as `signal` fires, or DeadlineExceededError at `deadline` (a Date.now() value). */
function bounded<T>(promise: Promise<T>, signal: AbortSignal, deadline: number | undefined): Promise<T> {
  if (signal.aborted) return Promise.reject(new AbortError('call aborted', { cause: signal.reason }));
  return new Promise((resolve, reject) => {
    const settle = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      settle();
      reject(new AbortError('call aborted', { cause: signal.reason }));
    };
    const timer = deadline === undefined ? undefined : setTimeout(() => {
      settle();
      reject(new DeadlineExceededError('context deadline exceeded: waiting for the auth token', { code: Status.DEADLINE_EXCEEDED }));
    }, deadline - Date.now());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        settle();
        resolve(v);
      },
      (err: unknown) => {
        settle();
        reject(err);
      },
    );
  });
}

/** Sends one unary call, cancelled when `signal` fires; nothing is sent once it has fired. */
function invoke<Req, Res>(fn: UnaryMethod<Req, Res>, request: Req, metadata: Metadata, deadline: number | undefined, signal: AbortSignal): Promise<Res> {
  if (signal.aborted) return Promise.reject(new AbortError('call aborted', { cause: signal.reason }));
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

