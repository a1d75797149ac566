/**
 * etcd-ts's gRPC server: gRPC calls (the gRPC-over-HTTP/2 protocol) on our own HTTP/2
 * connections (h2-connection.ts), answering as grpc-go's server does where a client can tell
 * (status codes and texts, trailers-only errors, unary calls served on their first message).
 *
 * Services are registered as with grpc-js (`addService(definition, implementation)`), and
 * handlers get call objects with the part of grpc-js's server-call API etcd-ts's services use:
 * unary handlers `(call, callback)` with `call.request`; streaming handlers a call that emits
 * 'data', 'end', 'cancelled', 'error', 'finish', 'close' and 'drain', and offers `write`,
 * `end`, `destroy`, `sendMetadata`, `cancelled`, `pendingStatus`, plus `writeFramed` for
 * messages framed by the caller (the watch stream's encode-once responses).
 */
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { status as GrpcStatus, type ServiceDefinition, type StatusObject } from '@grpc/grpc-js';
import { encodeHeaders, H2Connection, H2Error, type H2Stream, type HeaderField, type StreamListener } from './h2-connection.js';
import { serveHttp } from './h2-http.js';

/** Bytes of a gRPC message's prefix: the compressed flag and the 4-byte big-endian length. */
export const MESSAGE_PREFIX_BYTES = 5;

/**
 * Writes the prefix of an uncompressed gRPC message of `length` bytes into `out` at `at`;
 * returns where the message itself goes.
 */
export function writeMessagePrefix(out: Buffer, at: number, length: number): number {
  out[at] = 0;
  out.writeUInt32BE(length, at + 1);
  return at + MESSAGE_PREFIX_BYTES;
}

/**
 * What a call needs of the stream it runs on: an HTTP/2 stream (H2Stream), or the gRPC
 * gateway's in-process stand-in (src/server/http/gateway.ts), which feeds gRPC-framed request
 * messages to `listener` and takes framed responses from `sendData`. Header blocks are HPACK
 * (`encodeHeaders`); the stand-in reads the call's status from `ServerCall.pendingStatus`.
 */
export interface CallStream {
  /** The request's header fields (lower-case names), `:path` and metadata among them. */
  readonly headers: readonly HeaderField[];
  /** Receives the request's DATA, its end, and a reset by the client. */
  listener: StreamListener | undefined;
  /** Called when writes no longer wait (see `blocked`). */
  onDrain: (() => void) | undefined;
  /** True while the caller should hold further writes until `onDrain`. */
  readonly blocked: boolean;
  sendHeaders(block: Buffer, endStream: boolean): void;
  /** Sends gRPC-framed bytes; `cb` once they left. */
  sendData(data: Buffer, cb?: () => void): void;
  /** Sends the trailers (the status) and ends the response. */
  sendTrailers(block: Buffer): void;
}

/** A registered method (by path): its streaming flags, codec and handler. */
interface Method {
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize(bytes: Buffer): unknown;
  /** The response's protobuf bytes, or buffers whose bytes, in order, are the response's. */
  responseSerialize(value: unknown): Buffer | readonly Buffer[];
  handler: (...args: never[]) => void;
}

/**
 * Handlers by method name, as grpc-js takes them: `(call, callback)` for unary methods,
 * `(call)` for streaming ones, where `call` is a ServerCall.
 */
export type ServiceImplementation = Record<string, ((...args: never[]) => void) | undefined>;

const NO_BYTES = Buffer.alloc(0);

/** etcd's send limit for every response (`grpc.MaxSendMsgSize(math.MaxInt32)`), in bytes. */
export const MAX_SEND_MESSAGE_BYTES = 2 ** 31 - 1;

/** The status a handler or the server ends a call with. */
export interface CallStatus {
  code: number;
  details: string;
}

/** Options of a GrpcServer. */
export interface GrpcServerOptions {
  /** Largest request message accepted, in bytes (grpc-go's MaxRecvMsgSize). */
  maxReceiveMessageLength: number;
  /**
   * Largest response message sent, in bytes (grpc-go's MaxSendMsgSize): a larger one ends the
   * call with RESOURCE_EXHAUSTED instead. @default MAX_SEND_MESSAGE_BYTES (etcd's math.MaxInt32)
   */
  maxSendMessageLength?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per connection. */
  maxConcurrentStreams: number;
  /** Keepalive enforcement's minimum ping interval in ms (see H2ConnectionOptions.pingMinTimeMs). */
  pingMinTimeMs: number;
  /** The server's keepalive pings (see H2ConnectionOptions.keepalive). */
  keepalive: { intervalMs: number; timeoutMs: number };
}

const RESPONSE_HEADERS = encodeHeaders([[':status', '200'], ['content-type', 'application/grpc']]);

/**
 * The response content-type for a request's, or undefined when the request's is not gRPC's:
 * `application/grpc`, optionally followed by `+` or `;` and a subtype, which grpc-go echoes
 * as `application/grpc+<subtype>`.
 */
function responseContentType(requestType: string): string | undefined {
  if (requestType === 'application/grpc') return 'application/grpc';
  if (!requestType.startsWith('application/grpc')) return undefined;
  const sep = requestType[16];
  return sep === '+' || sep === ';' ? `application/grpc+${requestType.slice(17)}` : undefined;
}
const OK_TRAILERS = encodeHeaders([['grpc-status', '0'], ['grpc-message', '']]);

/** grpc-message's encoding (gRPC over HTTP/2): bytes outside printable ASCII, and '%', as %XX. */
function percentEncode(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Trailers carrying `status`; with the response headers in front (content-type
 * `contentType`) when nothing was sent before (trailers-only).
 */
function statusBlock(status: CallStatus, trailersOnly: boolean, contentType: string): Buffer {
  if (status.code === GrpcStatus.OK && !trailersOnly) return OK_TRAILERS;
  const fields: HeaderField[] = trailersOnly ? [[':status', '200'], ['content-type', contentType]] : [];
  fields.push(['grpc-status', String(status.code)], ['grpc-message', percentEncode(status.details)]);
  return encodeHeaders(fields);
}

/** grpc-timeout units in milliseconds. */
const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * A grpc-timeout value in milliseconds, or undefined when grpc-go would refuse it: 2 to 9
 * characters, an integer (Go's ParseInt, so a sign is allowed) and a unit.
 */
function parseTimeout(value: string): number | undefined {
  if (value.length < 2 || value.length > 9) return undefined;
  const unit = TIMEOUT_UNITS[value[value.length - 1]!];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^[+-]?\d+$/.test(digits)) return undefined;
  return Number(digits) * unit;
}

/** The common name of a TLS client certificate that verified against the trusted CAs (grpc-go's `VerifiedChains[0]`), else undefined. */
export function verifiedCommonName(socket: Duplex): string | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

/**
 * A call's request metadata, as grpc-js's Metadata offers it to etcd-ts's handlers, and the
 * connection's client certificate (what etcd reads from the call's peer).
 */
class RequestMetadata {
  private readonly headers: readonly HeaderField[];
  /** The common name of the client's verified TLS certificate; undefined without one. */
  readonly peerCommonName: string | undefined;

  constructor(headers: readonly HeaderField[], peerCommonName: string | undefined) {
    this.headers = headers;
    this.peerCommonName = peerCommonName;
  }

  /** Every value of header `key` (lower case). */
  get(key: string): string[] {
    const out: string[] = [];
    for (const [n, v] of this.headers) if (n === key) out.push(v);
    return out;
  }
}

/**
 * One call. It parses the request's gRPC messages from the stream's DATA, hands them to the
 * handler, and writes responses, headers and the status. `done` once the status is sent or
 * the stream is gone; nothing is sent after that.
 */
export class ServerCall extends EventEmitter {
  request: unknown;
  readonly metadata: RequestMetadata;
  cancelled = false;
  /**
   * The status the call ended (or will end) with, once known. A handler may set it when the
   * call is cancelled (`cancelled` event), to the error etcd's handler returns then: a deadline
   * then ends a streaming call with it (grpc-go sends the handler's error).
   */
  pendingStatus: CallStatus | undefined;
  /** True when a request-streaming call ended because a request could not be received (too large, malformed). */
  receiveFailed = false;
  private readonly stream: CallStream;
  private readonly method: Method;
  private readonly maxReceive: number;
  /** Largest response message sent (see GrpcServerOptions.maxSendMessageLength). */
  private readonly maxSend: number;
  /** The response content-type (the request's subtype echoed). */
  private readonly contentType: string;
  private readonly responseHeaders: Buffer;
  private headersSent = false;
  /** True once a DATA frame arrived, even an empty one. */
  private sawData = false;
  private done = false;
  private needDrain = false;
  private timer: NodeJS.Timeout | undefined;
  /** When the call's deadline passes (`performance.now()` ms); undefined without one. */
  private deadlineAt: number | undefined;
  /** Unparsed request bytes, as they arrived, and their total. */
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  /** True once the message of a unary or server-streaming call was handed over. */
  private dispatched = false;

  constructor(stream: CallStream, method: Method, maxReceive: number, maxSend: number, contentType: string, peerCommonName: string | undefined) {
    super();
    this.stream = stream;
    this.method = method;
    this.maxReceive = maxReceive;
    this.maxSend = maxSend;
    this.contentType = contentType;
    this.responseHeaders = contentType === 'application/grpc' ? RESPONSE_HEADERS : encodeHeaders([[':status', '200'], ['content-type', contentType]]);
    this.metadata = new RequestMetadata(stream.headers, peerCommonName);
    stream.onDrain = () => {
      if (!this.needDrain || this.stream.blocked) return;
      this.needDrain = false;
      this.emit('drain');
    };
    stream.listener = {
      onData: (data) => this.onData(data),
      onEnd: () => this.onEnd(),
      onReset: () => this.onReset(),
    };
  }

  /**
   * Arms the call's deadline (grpc-timeout). When it passes the call is cancelled; a call still
   * waiting for its request, or a streaming call, ends with DEADLINE_EXCEEDED, while a running
   * unary handler answers as it will (grpc-go sends nothing of its own then).
   */
  setDeadline(ms: number): void {
    this.deadlineAt = performance.now() + ms;
    this.timer = setTimeout(() => {
      if (this.done) return;
      this.cancelled = true;
      this.emit('cancelled', 'deadline');
      if (this.dispatched && !this.method.responseStream) return;
      this.sendStatus(this.pendingStatus ?? { code: GrpcStatus.DEADLINE_EXCEEDED, details: 'context deadline exceeded' });
    }, Math.max(0, ms));
    this.timer.unref();
  }

  private onData(data: Buffer): void {
    this.sawData = true;
    // grpc-go reads nothing past the first message of a unary or server-streaming call.
    if (this.done || data.length === 0 || this.readDone) return;
    this.chunks.push(data);
    this.bufferedBytes += data.length;
    while (this.bufferedBytes >= 5 && !this.done && !this.readDone) {
      const head = this.peek(5);
      const flag = head[0]!;
      const length = head.readUInt32BE(1);
      if (length > this.maxReceive) {
        this.failReceive({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: `grpc: received message larger than max (${length} vs. ${this.maxReceive})` });
        return;
      }
      if (this.bufferedBytes < 5 + length) return;
      const bytes = this.take(5 + length).subarray(5);
      if (flag > 1) {
        this.failReceive({ code: GrpcStatus.INTERNAL, details: `grpc: received unexpected payload format ${flag}` });
        return;
      }
      if (flag === 1) {
        this.failReceive({ code: GrpcStatus.INTERNAL, details: 'grpc: compressed flag set with identity or empty encoding' });
        return;
      }
      this.onMessage(bytes);
    }
  }

  /** True once a unary or server-streaming call has its one message. */
  private get readDone(): boolean {
    return this.dispatched && !this.method.requestStream;
  }

  /** The first `n` buffered bytes (n ≤ bufferedBytes), left buffered. */
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  /** Removes and returns the first `n` buffered bytes (n ≤ bufferedBytes), copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.peek(n);
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.bufferedBytes -= n;
    return out;
  }

  private onMessage(bytes: Buffer): void {
    const m = this.method;
    // A deadline already passed when the request is read: grpc-go's reader sees the context
    // done before the message (the two race there; the context usually wins), and the handler
    // never runs.
    if (!m.requestStream && this.deadlineAt !== undefined && performance.now() >= this.deadlineAt) {
      this.sendStatus({ code: GrpcStatus.DEADLINE_EXCEEDED, details: 'context deadline exceeded' });
      return;
    }
    // A unary or server-streaming call is served on its first message.
    if (!m.requestStream) this.dispatched = true;
    let request: unknown;
    try {
      request = m.requestDeserialize(bytes);
    } catch (err) {
      const prefix = m.requestStream || m.responseStream ? 'grpc: failed to unmarshal the received message ' : 'grpc: error unmarshalling request: ';
      this.failReceive({ code: GrpcStatus.INTERNAL, details: prefix + (err instanceof Error ? err.message : String(err)) });
      return;
    }
    if (m.requestStream) {
      this.emit('data', request);
      return;
    }
    this.request = request;
    if (m.responseStream) {
      (m.handler as (call: ServerCall) => void)(this);
      return;
    }
    (m.handler as (call: ServerCall, cb: (err: Partial<StatusObject> | null, value?: unknown) => void) => void)(this, (err, value) => {
      if (err) this.sendStatus({ code: err.code ?? GrpcStatus.UNKNOWN, details: err.details ?? '' });
      else this.respond(value);
    });
  }

  private onEnd(): void {
    if (this.done) return;
    if (this.method.requestStream) {
      if (this.bufferedBytes > 0) this.failReceive({ code: GrpcStatus.INTERNAL, details: 'unexpected EOF' });
      else this.emit('end');
      return;
    }
    // grpc-go reads a unary request with io.ReadFull: nothing is EOF, a part of one unexpected
    // EOF (INTERNAL for a server-streaming call, whose handler reads it as a stream message).
    // An end with the headers and no DATA frame reaches no reader there: the call waits for
    // its deadline, as etcd's does.
    if (!this.dispatched && this.sawData) {
      if (this.bufferedBytes === 0) this.sendStatus({ code: GrpcStatus.UNKNOWN, details: 'EOF' });
      else this.sendStatus({ code: this.method.responseStream ? GrpcStatus.INTERNAL : GrpcStatus.UNKNOWN, details: 'unexpected EOF' });
    }
  }

  private onReset(): void {
    if (this.done) return;
    this.done = true;
    this.cancelled = true;
    clearTimeout(this.timer);
    // A client resets a call when its deadline passes; once ours has passed too, the call ended
    // by its deadline, as grpc-go's context says, even if our timer has not fired yet.
    if (this.deadlineAt !== undefined && performance.now() >= this.deadlineAt) {
      this.pendingStatus ??= { code: GrpcStatus.DEADLINE_EXCEEDED, details: 'context deadline exceeded' };
      this.emit('cancelled', 'deadline');
    } else {
      this.pendingStatus ??= { code: GrpcStatus.CANCELLED, details: 'context canceled' };
      this.emit('cancelled', 'cancelled');
    }
    this.emit('close');
  }

  /** Sends the response headers now (grpc-js `sendMetadata`), if they were not sent yet. */
  sendMetadata(): void {
    if (this.done || this.headersSent) return;
    this.headersSent = true;
    this.stream.sendHeaders(this.responseHeaders, false);
  }

  /**
   * Writes one response; false when the caller should wait for 'drain'. A response given as
   * buffers (see `Method.responseSerialize`) goes out as they are, after its first.
   */
  write(message: unknown): boolean {
    if (this.done) return false;
    const out = this.method.responseSerialize(message);
    const parts = Buffer.isBuffer(out) ? [out] : out;
    let length = 0;
    for (const part of parts) length += part.length;
    if (length > this.maxSend) {
      this.sendStatus({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: `grpc: trying to send message larger than max (${length} vs. ${this.maxSend})` });
      return false;
    }
    const first = parts[0] ?? NO_BYTES;
    const framed = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + first.length);
    first.copy(framed, writeMessagePrefix(framed, 0, length));
    return this.writeFramed(parts.length > 1 ? [framed, ...parts.slice(1)] : framed);
  }

  /**
   * Writes gRPC messages already framed (flag byte, 4-byte length, message), in one buffer or
   * several sent in order; `cb` once they are in a completed socket write. False when the caller
   * should wait for 'drain'.
   */
  writeFramed(framed: Buffer | readonly Buffer[], cb?: () => void): boolean {
    if (this.done) return false;
    this.sendMetadata();
    if (Buffer.isBuffer(framed)) this.stream.sendData(framed, cb);
    else framed.forEach((part, i) => this.stream.sendData(part, i === framed.length - 1 ? cb : undefined));
    if (!this.stream.blocked) return true;
    this.needDrain = true;
    return false;
  }

  /** True once the call's status was sent or its stream is gone. */
  get closed(): boolean {
    return this.done;
  }

  /** Ends a streaming call with status OK. */
  end(): void {
    this.sendStatus({ code: GrpcStatus.OK, details: '' });
  }

  /** Ends the call with `err`'s status (code and details, as grpc-js takes them), or INTERNAL. */
  destroy(err?: Error & Partial<StatusObject>): void {
    if (err?.code !== undefined) this.sendStatus({ code: err.code, details: err.details ?? err.message });
    else this.sendStatus({ code: GrpcStatus.INTERNAL, details: err?.message ?? 'call destroyed' });
  }

  /**
   * As grpc-js's streaming calls: an 'error' emitted with a status object ends the call with
   * that status (after any listeners), and needs no listener.
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'error') return super.emit(event, ...args);
    const heard = this.listenerCount('error') > 0 ? super.emit(event, ...args) : false;
    const err = args[0] as Partial<StatusObject> | undefined;
    this.sendStatus({ code: err?.code ?? GrpcStatus.UNKNOWN, details: err?.details ?? '' });
    return heard;
  }

  private respond(value: unknown): void {
    this.write(value);
    this.end();
  }

  /** Ends the call with `status` because a request could not be received. */
  private failReceive(status: CallStatus): void {
    if (this.method.requestStream) this.receiveFailed = true;
    this.sendStatus(status);
  }

  private sendStatus(status: CallStatus): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.pendingStatus = status;
    this.stream.sendTrailers(statusBlock(status, !this.headersSent, this.contentType));
    this.emit('finish');
    this.emit('close');
  }
}

/**
 * A gRPC server on our HTTP/2 connections. Connections are handed to it by the listeners
 * (`handleConnection`); it keeps the registered methods by path.
 */
export class GrpcServer {
  private readonly methods = new Map<string, Method>();
  private readonly services = new Set<string>();
  private readonly connections = new Set<H2Connection>();
  private readonly opts: GrpcServerOptions;

  constructor(opts: GrpcServerOptions) {
    this.opts = opts;
  }

  /** Registers every method of `service` whose handler `impl` has (grpc-js's `Server.addService`). */
  addService(service: ServiceDefinition, impl: ServiceImplementation): void {
    for (const [name, def] of Object.entries(service)) {
      const handler = impl[name];
      if (handler === undefined) continue;
      this.services.add(def.path.slice(1, def.path.lastIndexOf('/')));
      this.methods.set(def.path, {
        requestStream: def.requestStream,
        responseStream: def.responseStream,
        requestDeserialize: def.requestDeserialize,
        responseSerialize: def.responseSerialize as (value: unknown) => Buffer | readonly Buffer[],
        handler: handler as (...args: never[]) => void,
      });
    }
  }

  /**
   * Serves HTTP/2 on `socket` (its next bytes are the client preface). Requests that are not
   * gRPC calls (by content-type) go to `httpHandler` when given (etcd's TLS listener serves its
   * HTTP endpoints that way); without it they are reset, as grpc-go's server resets them on
   * etcd's plaintext listener.
   */
  handleConnection(socket: Duplex, httpHandler: http.RequestListener | undefined): void {
    const peerCommonName = verifiedCommonName(socket);
    // etcd 3.4 serves gRPC over TLS through Go's net/http (grpcServer.ServeHTTP), which applies
    // no --grpc-keepalive-* setting: pings are never refused there, and none are sent.
    const secure = socket instanceof TLSSocket;
    const conn: H2Connection = new H2Connection(socket, {
      maxConcurrentStreams: this.opts.maxConcurrentStreams,
      pingMinTimeMs: secure ? Infinity : this.opts.pingMinTimeMs,
      keepalive: secure ? undefined : this.opts.keepalive,
      onStream: (stream) => this.onStream(stream, httpHandler, socket, peerCommonName),
      onClose: () => this.connections.delete(conn),
    });
    this.connections.add(conn);
  }

  /** Closes every connection (GOAWAY, then the socket); their open calls are cancelled. */
  close(): void {
    for (const c of [...this.connections]) c.close();
    this.connections.clear();
  }

  private onStream(stream: H2Stream, httpHandler: http.RequestListener | undefined, socket: Duplex, peerCommonName: string | undefined): void {
    const contentType = responseContentType(stream.header('content-type') ?? '');
    if (contentType === undefined) {
      if (httpHandler) serveHttp(stream, httpHandler, socket);
      else stream.reset(H2Error.PROTOCOL_ERROR);
      return;
    }
    const timeout = stream.header('grpc-timeout');
    const ms = timeout === undefined ? undefined : parseTimeout(timeout);
    if (timeout !== undefined && ms === undefined) {
      stream.reset(H2Error.PROTOCOL_ERROR);
      return;
    }
    const raw = stream.header(':path') ?? '';
    const path = raw.startsWith('/') ? raw : `/${raw}`;
    const method = this.methods.get(path);
    if (!method) {
      const slash = path.lastIndexOf('/');
      let details: string;
      if (slash <= 0) details = `malformed method name: ${JSON.stringify(raw)}`;
      else {
        const service = path.slice(1, slash);
        details = this.services.has(service) ? `unknown method ${path.slice(slash + 1)} for service ${service}` : `unknown service ${service}`;
      }
      this.answerOnly(stream, { code: slash <= 0 ? GrpcStatus.RESOURCE_EXHAUSTED : GrpcStatus.UNIMPLEMENTED, details }, contentType);
      return;
    }
    const encoding = stream.header('grpc-encoding');
    if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
      this.answerOnly(stream, { code: GrpcStatus.UNIMPLEMENTED, details: `grpc: Decompressor is not installed for grpc-encoding "${encoding}"` }, contentType);
      return;
    }
    this.startCall(stream, method, contentType, peerCommonName, ms);
  }

  /**
   * Starts the call of registered method `path` on `stream` (the gRPC gateway's in-process
   * stand-in), as a call from a connection without a client certificate. Undefined when no
   * such method is registered.
   */
  invoke(path: string, stream: CallStream): ServerCall | undefined {
    const method = this.methods.get(path);
    return method && this.startCall(stream, method, 'application/grpc', undefined, undefined);
  }

  private startCall(stream: CallStream, method: Method, contentType: string, peerCommonName: string | undefined, timeoutMs: number | undefined): ServerCall {
    const call = new ServerCall(stream, method, this.opts.maxReceiveMessageLength, this.opts.maxSendMessageLength ?? MAX_SEND_MESSAGE_BYTES, contentType, peerCommonName);
    if (timeoutMs !== undefined) call.setDeadline(timeoutMs);
    if (method.requestStream) (method.handler as (call: ServerCall) => void)(call);
    return call;
  }

  /** Answers a call with `status` alone, before reading its request. */
  private answerOnly(stream: H2Stream, status: CallStatus, contentType: string): void {
    stream.listener = { onData: () => {}, onEnd: () => {}, onReset: () => {} };
    stream.sendTrailers(statusBlock(status, true, contentType));
  }
}
