/**
 * etcd's gRPC gateway (etcd 3.4 `embed/serve.go` with grpc-gateway v1): the gRPC API as JSON
 * over HTTP/1.1 on the client URLs, `POST /v3/kv/range` and the rest of the routes below.
 *
 * etcd's gateway is a gRPC client of its own server; ours starts the same registered gRPC
 * methods in-process (`GrpcServer.invoke`) on a stand-in stream, so a gateway request goes
 * through everything a gRPC call does (request checks, auth, metrics). The JSON mapping is
 * grpc-gateway's `JSONPb{OrigName: true}` (golang/protobuf's jsonpb): the proto field names
 * (`create_revision`, `ID`, `dbSize`), 64-bit integers as strings, bytes as standard base64,
 * enums by name, fields at their zero value left out; requests accept the proto or the
 * lowerCamel JSON name, numbers or strings for integers, and ignore unknown fields. The field
 * names and types come from the protos' descriptor set (`descriptor-set.gen.ts`).
 *
 * - Unary: the body's first JSON value is the request (an empty body is an empty request); the
 *   answer is the response's JSON, or `{"error":…,"message":…,"code":N}` with the HTTP status
 *   grpc-gateway maps the gRPC code to.
 * - Streaming: each response is a line `{"result":{…}}` of a chunked answer; a failure after
 *   the first ends it with `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`.
 *   Streaming requests (watch, lease keepalive) are read as a sequence of JSON values for as
 *   long as the body lasts; its end half-closes the call, which keeps running (a watch
 *   keeps sending) until the client goes away.
 * - Metadata: `Authorization` is passed as `authorization` (etcd reads its token there) and
 *   `Grpc-Metadata-<name>` as `<name>`; `Grpc-Timeout` sets the call's deadline. gRPC response
 *   headers come back as `Grpc-Metadata-<name>`.
 *
 * WebSocket upgrades to `/v3/` paths are served as etcd's proxy serves them (`gatewayWebSocket`).
 */
import { EventEmitter } from 'node:events';
import { STATUS_CODES } from 'node:http';
import type http from 'node:http';
import { Readable } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { createFileRegistry, fromBinary, fromJson, toBinary, type DescMessage, type Message } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { DESCRIPTOR_SET_BASE64 } from '../../proto/gen/descriptor-set.gen.js';
import { httpError, reply, type WebSocketHandler } from './handlers.js';
import { JsonDecodeError, readJsonValues, type RawJson } from './go-json.js';
import { decodeRequestMessage, JsonNilMessage } from './jsonpb.js';
import { jsonMessageWriter } from './jsonpb-encode.js';
import type { HeaderField, StreamListener } from '../transport/h2-connection.js';
import { MESSAGE_PREFIX_BYTES, writeMessagePrefix, type CallStatus, type CallStream, type GrpcServer, type ServerCall } from '../transport/grpc-server.js';

/** HTTP path → [proto service, method], as etcd 3.4's `*.pb.gw.go` register them (first match wins). */
const ROUTES: readonly (readonly [string, string, string])[] = [
  ['/v3/kv/range', 'etcdserverpb.KV', 'Range'],
  ['/v3/kv/put', 'etcdserverpb.KV', 'Put'],
  ['/v3/kv/deleterange', 'etcdserverpb.KV', 'DeleteRange'],
  ['/v3/kv/txn', 'etcdserverpb.KV', 'Txn'],
  ['/v3/kv/compaction', 'etcdserverpb.KV', 'Compact'],
  ['/v3/watch', 'etcdserverpb.Watch', 'Watch'],
  ['/v3/lease/grant', 'etcdserverpb.Lease', 'LeaseGrant'],
  ['/v3/lease/revoke', 'etcdserverpb.Lease', 'LeaseRevoke'],
  ['/v3/kv/lease/revoke', 'etcdserverpb.Lease', 'LeaseRevoke'],
  ['/v3/lease/keepalive', 'etcdserverpb.Lease', 'LeaseKeepAlive'],
  ['/v3/lease/timetolive', 'etcdserverpb.Lease', 'LeaseTimeToLive'],
  ['/v3/kv/lease/timetolive', 'etcdserverpb.Lease', 'LeaseTimeToLive'],
  ['/v3/lease/leases', 'etcdserverpb.Lease', 'LeaseLeases'],
  ['/v3/kv/lease/leases', 'etcdserverpb.Lease', 'LeaseLeases'],
  ['/v3/cluster/member/add', 'etcdserverpb.Cluster', 'MemberAdd'],
  ['/v3/cluster/member/remove', 'etcdserverpb.Cluster', 'MemberRemove'],
  ['/v3/cluster/member/update', 'etcdserverpb.Cluster', 'MemberUpdate'],
  ['/v3/cluster/member/list', 'etcdserverpb.Cluster', 'MemberList'],
  ['/v3/cluster/member/promote', 'etcdserverpb.Cluster', 'MemberPromote'],
  ['/v3/maintenance/alarm', 'etcdserverpb.Maintenance', 'Alarm'],
  ['/v3/maintenance/status', 'etcdserverpb.Maintenance', 'Status'],
  ['/v3/maintenance/defragment', 'etcdserverpb.Maintenance', 'Defragment'],
  // etcd registers Hash and HashKV on the same path; grpc-gateway v1 serves the first.
  ['/v3/maintenance/hash', 'etcdserverpb.Maintenance', 'Hash'],
  ['/v3/maintenance/snapshot', 'etcdserverpb.Maintenance', 'Snapshot'],
  ['/v3/maintenance/transfer-leadership', 'etcdserverpb.Maintenance', 'MoveLeader'],
  ['/v3/auth/enable', 'etcdserverpb.Auth', 'AuthEnable'],
  ['/v3/auth/disable', 'etcdserverpb.Auth', 'AuthDisable'],
  ['/v3/auth/status', 'etcdserverpb.Auth', 'AuthStatus'],
  ['/v3/auth/authenticate', 'etcdserverpb.Auth', 'Authenticate'],
  ['/v3/auth/user/add', 'etcdserverpb.Auth', 'UserAdd'],
  ['/v3/auth/user/get', 'etcdserverpb.Auth', 'UserGet'],
  ['/v3/auth/user/list', 'etcdserverpb.Auth', 'UserList'],
  ['/v3/auth/user/delete', 'etcdserverpb.Auth', 'UserDelete'],
  ['/v3/auth/user/changepw', 'etcdserverpb.Auth', 'UserChangePassword'],
  ['/v3/auth/user/grant', 'etcdserverpb.Auth', 'UserGrantRole'],
  ['/v3/auth/user/revoke', 'etcdserverpb.Auth', 'UserRevokeRole'],
  ['/v3/auth/role/add', 'etcdserverpb.Auth', 'RoleAdd'],
  ['/v3/auth/role/get', 'etcdserverpb.Auth', 'RoleGet'],
  ['/v3/auth/role/list', 'etcdserverpb.Auth', 'RoleList'],
  ['/v3/auth/role/delete', 'etcdserverpb.Auth', 'RoleDelete'],
  ['/v3/auth/role/grant', 'etcdserverpb.Auth', 'RoleGrantPermission'],
  ['/v3/auth/role/revoke', 'etcdserverpb.Auth', 'RoleRevokePermission'],
  ['/v3/lock/lock', 'v3lockpb.Lock', 'Lock'],
  ['/v3/lock/unlock', 'v3lockpb.Lock', 'Unlock'],
  ['/v3/election/campaign', 'v3electionpb.Election', 'Campaign'],
  ['/v3/election/proclaim', 'v3electionpb.Election', 'Proclaim'],
  ['/v3/election/leader', 'v3electionpb.Election', 'Leader'],
  ['/v3/election/observe', 'v3electionpb.Election', 'Observe'],
  ['/v3/election/resign', 'v3electionpb.Election', 'Resign'],
];

/** A gateway route: the gRPC method's path, its messages and streaming kinds. */
interface Route {
  grpcPath: string;
  request: DescMessage;
  response: DescMessage;
  /** A response message's JSON text as UTF-8 (grpc-gateway's JSONPb with OrigName, see jsonpb-encode.ts). */
  responseJson: (message: Message, capacity?: number) => Buffer;
  requestStream: boolean;
  responseStream: boolean;
}

/** The routes by HTTP path, with their message types from the descriptor set. */
function loadRoutes(): Map<string, Route> {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, 'base64')));
  const routes = new Map<string, Route>();
  for (const [path, service, name] of ROUTES) {
    const method = registry.getService(service)?.methods.find((m) => m.name === name);
    if (!method) throw new Error(`gateway route ${path}: no method ${service}/${name} in the descriptor set`);
    routes.set(path, {
      grpcPath: `/${service}/${name}`,
      request: method.input,
      response: method.output,
      responseJson: jsonMessageWriter(method.output),
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
    });
  }
  return routes;
}

/** grpc-gateway's `HTTPStatusFromCode`. */
const HTTP_STATUS: Record<number, number> = {
  [GrpcStatus.OK]: 200,
  [GrpcStatus.CANCELLED]: 408,
  [GrpcStatus.UNKNOWN]: 500,
  [GrpcStatus.INVALID_ARGUMENT]: 400,
  [GrpcStatus.DEADLINE_EXCEEDED]: 504,
  [GrpcStatus.NOT_FOUND]: 404,
  [GrpcStatus.ALREADY_EXISTS]: 409,
  [GrpcStatus.PERMISSION_DENIED]: 403,
  [GrpcStatus.UNAUTHENTICATED]: 401,
  [GrpcStatus.RESOURCE_EXHAUSTED]: 429,
  [GrpcStatus.FAILED_PRECONDITION]: 412,
  [GrpcStatus.ABORTED]: 409,
  [GrpcStatus.OUT_OF_RANGE]: 400,
  [GrpcStatus.UNIMPLEMENTED]: 501,
  [GrpcStatus.INTERNAL]: 500,
  [GrpcStatus.UNAVAILABLE]: 503,
  [GrpcStatus.DATA_LOSS]: 500,
};

/** The gRPC response headers grpc-gateway passes on (`Grpc-Metadata-` + name). */
const GRPC_HEADERS = { 'Grpc-Metadata-Content-Type': 'application/grpc' };

const httpStatusOf = (code: number): number => HTTP_STATUS[code] ?? 500;

/** One request message from a JSON value, framed for the call; throws JsonDecodeError, JsonNilMessage. */
function decodeRequest(schema: DescMessage, value: RawJson): Buffer {
  return frame(toBinary(schema, fromJson(schema, decodeRequestMessage(schema, value))));
}

/** `bytes` as one gRPC message (flag byte, 4-byte length). */
function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + bytes.length);
  out.set(bytes, writeMessagePrefix(out, 0, bytes.length));
  return out;
}

/**
 * A response message's JSON text as UTF-8, from its protobuf `bytes`. Its buffer starts at 1.5
 * times their size, which holds a message of mostly bytes fields (base64 makes 4 bytes of 3,
 * names and quotes add a few per field) without growing; a range of 20 KB values takes 1.34.
 */
function encodeResponse(route: Route, bytes: Uint8Array): Buffer {
  return route.responseJson(fromBinary(route.response, bytes), Math.ceil(bytes.length * 1.5) + 256);
}

/** The call's metadata from the HTTP request's headers, as grpc-gateway's AnnotateContext passes them. */
function callHeaders(grpcPath: string, req: http.IncomingMessage): HeaderField[] {
  const fields: HeaderField[] = [[':path', grpcPath]];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name === 'authorization') fields.push(['authorization', value]);
    else if (name.startsWith('grpc-metadata-')) fields.push([name.slice('grpc-metadata-'.length), value]);
  }
  return fields;
}

/**
 * The in-process stream a gateway call runs on: request messages go to the call through
 * `listener`, framed responses come back through `sendData` and are handed on one message at
 * a time.
 */
class GatewayStream implements CallStream {
  readonly headers: readonly HeaderField[];
  listener: StreamListener | undefined;
  onDrain: (() => void) | undefined;
  private readonly res: http.ServerResponse;
  private readonly onMessage: (bytes: Buffer) => void;
  /** Bytes sent and not handed on yet: a message's buffers are joined once it is complete. */
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  constructor(headers: readonly HeaderField[], res: http.ServerResponse, onMessage: (bytes: Buffer) => void) {
    this.headers = headers;
    this.res = res;
    this.onMessage = onMessage;
  }

  get blocked(): boolean {
    return this.res.writableNeedDrain;
  }

  sendHeaders(): void {}

  sendData(data: Buffer, cb?: () => void): void {
    this.buffered.push(data);
    this.bufferedBytes += data.length;
    while (this.bufferedBytes >= 5) {
      const first = this.buffered[0]!.length >= 5 ? this.buffered[0]! : this.joined();
      const length = first.readUInt32BE(1);
      if (this.bufferedBytes < 5 + length) break;
      const bytes = this.joined();
      this.onMessage(bytes.subarray(5, 5 + length));
      const rest = bytes.subarray(5 + length);
      this.buffered = rest.length === 0 ? [] : [rest];
      this.bufferedBytes = rest.length;
    }
    cb?.();
  }

  /** The bytes buffered, as one buffer. */
  private joined(): Buffer {
    if (this.buffered.length > 1) this.buffered = [Buffer.concat(this.buffered, this.bufferedBytes)];
    return this.buffered[0]!;
  }

  sendTrailers(): void {}
}

/** Answers a gateway request; `path` is the request's path after etcd's `/v3beta/` → `/v3/` rewrite. */
export type GatewayHandler = (req: http.IncomingMessage, res: http.ServerResponse, path: string) => void;

/**
 * The gateway over `grpc`'s registered methods (grpc-gateway's ServeMux with etcd's handlers),
 * for one client listener. etcd's gateway is a gRPC client on one connection to its listener, so
 * the server's `--max-concurrent-streams` (`maxStreams`, default unlimited) caps the gateway's
 * calls in flight together: a request past the cap waits, until a call ends, its own
 * `grpc-timeout` passes (DeadlineExceeded), or its client goes away. A watch or keep-alive holds
 * its place for as long as it is open.
 */
export function gatewayHandler(grpc: GrpcServer, maxStreams = Infinity): GatewayHandler {
  const routes = loadRoutes();
  let open = 0;
  const waiting = new Set<() => void>();
  const release = (): void => {
    open--;
    const next = waiting.values().next();
    if (!next.done && open < maxStreams) next.value();
  };
  return (req, res, path) => {
    const route = routes.get(path);
    // grpc-gateway's DefaultOtherErrorHandler answers routing errors with Go's `http.Error`.
    if (!route) httpError(res, 404, 'Not Found');
    else if (req.method !== 'POST') httpError(res, 405, 'Method Not Allowed');
    else {
      const arrivedAt = performance.now();
      const deadline = gatewayDeadline(req, arrivedAt);
      const start = (): void => {
        waiting.delete(start);
        clearTimeout(expiry);
        if (res.writableEnded) return;
        open++;
        res.once('close', release);
        serve(grpc, route, req, res, deadline);
      };
      let expiry: NodeJS.Timeout | undefined;
      if (open < maxStreams) start();
      else {
        waiting.add(start);
        res.once('close', () => waiting.delete(start));
        // The gRPC client's deadline passes while it waits for a stream (serve() answers a
        // timeout it cannot read, and one already past).
        if ('at' in deadline && deadline.at !== undefined && deadline.at > arrivedAt) {
          expiry = setTimeout(() => {
            // Not if the client went away meanwhile.
            if (waiting.delete(start)) unaryError(res, { code: GrpcStatus.DEADLINE_EXCEEDED, details: 'context deadline exceeded' }, false);
          }, deadline.at - arrivedAt);
        }
      }
    }
  };
}

/**
 * grpc-gateway's DefaultHTTPError: the status as `{"error":…,"message":…,"code":N}`. An error
 * the call returned (`fromCall`) carries the call's metadata as grpc-go hands a trailers-only
 * answer to the gateway: content-type in the trailer metadata, so the body is chunked and
 * followed by the trailer `Grpc-Trailer-Content-Type`.
 */
function unaryError(res: http.ServerResponse, status: CallStatus, fromCall: boolean): void {
  const body: Record<string, unknown> = {};
  if (status.details !== '') {
    body.error = status.details;
    body.message = status.details;
  }
  if (status.code !== 0) body.code = status.code;
  const code = httpStatusOf(status.code);
  if (!fromCall) {
    answer(res, code, JSON.stringify(body));
    return;
  }
  res.writeHead(code, { 'Content-Type': 'application/json', Trailer: 'Grpc-Trailer-Content-Type' });
  res.addTrailers({ 'Grpc-Trailer-Content-Type': 'application/grpc' });
  res.end(JSON.stringify(body));
}

/** A whole JSON answer (see `reply`). */
function answer(res: http.ServerResponse, code: number, body: string | Uint8Array, headers: Record<string, string> = {}): void {
  reply(res, code, { 'Content-Type': 'application/json', ...headers }, body);
}

/** A streaming answer's line around a response's JSON (grpc-gateway's `streamChunk`). */
const RESULT_OPEN = Buffer.from('{"result":');
const RESULT_CLOSE = Buffer.from('}\n');

/** A streaming answer's failure line (grpc-gateway's `streamChunk` of an error). */
function streamErrorLine(status: CallStatus): string {
  const http = httpStatusOf(status.code);
  const error: Record<string, unknown> = {};
  if (status.code !== 0) error.grpc_code = status.code;
  error.http_code = http;
  if (status.details !== '') error.message = status.details;
  error.http_status = STATUS_CODES[http] ?? '';
  return JSON.stringify({ error });
}

/**
 * grpc-gateway's `timeoutDecode` of a Grpc-Timeout header: milliseconds (Go's Duration
 * arithmetic: an int64 of nanoseconds that wraps around on overflow, so a huge value can come
 * out negative, a deadline already past), or undefined when it refuses the value.
 */
function gatewayTimeoutMs(value: string): number | undefined {
  const units: Record<string, bigint> = { H: 3_600_000_000_000n, M: 60_000_000_000n, S: 1_000_000_000n, m: 1_000_000n, u: 1000n, n: 1n };
  const unit = units[value.slice(-1)];
  const digits = value.slice(0, -1);
  if (value.length < 2 || unit === undefined || !/^[+-]?\d+$/.test(digits)) return undefined;
  const count = BigInt(digits);
  if (count !== BigInt.asIntN(64, count)) return undefined;
  return Number(BigInt.asIntN(64, count * unit)) / 1e6;
}

/**
 * A gateway request's Grpc-Timeout as grpc-gateway reads it: when the deadline passes
 * (`performance.now()` ms, counted from `arrivedAt`; none without the header or for 0, for
 * which grpc-gateway sets none), or the header's value when it refuses it.
 */
function gatewayDeadline(req: http.IncomingMessage, arrivedAt: number): { at: number | undefined } | { invalid: string } {
  const timeout = req.headers['grpc-timeout'];
  if (typeof timeout !== 'string') return { at: undefined };
  const ms = gatewayTimeoutMs(timeout);
  if (ms === undefined) return { invalid: timeout };
  return { at: ms === 0 ? undefined : arrivedAt + ms };
}

/** Runs one gateway request, with its `deadline` (see gatewayDeadline), as a call of `route` and answers it. */
function serve(grpc: GrpcServer, route: Route, req: http.IncomingMessage, res: http.ServerResponse, deadline: ReturnType<typeof gatewayDeadline>): void {
  if ('invalid' in deadline) {
    unaryError(res, { code: GrpcStatus.INVALID_ARGUMENT, details: `invalid grpc-timeout: ${deadline.invalid}` }, false);
    return;
  }
  let started = false;
  /**
   * The answer's head, once: a stream that ended before its first message had no gRPC headers
   * to forward (a trailers-only answer), so it has no `Grpc-Metadata-Content-Type`.
   */
  const startStream = (withMessage: boolean): void => {
    if (started) return;
    started = true;
    res.writeHead(200, { 'Content-Type': 'application/json', ...(withMessage ? GRPC_HEADERS : {}) });
  };
  const stream = new GatewayStream(callHeaders(route.grpcPath, req), res, (bytes) => {
    if (!route.responseStream) {
      answer(res, 200, encodeResponse(route, bytes), GRPC_HEADERS);
      return;
    }
    startStream(true);
    res.write(Buffer.concat([RESULT_OPEN, encodeResponse(route, bytes), RESULT_CLOSE]));
  });
  res.on('drain', () => stream.onDrain?.());
  const call: ServerCall | undefined = grpc.invoke(route.grpcPath, stream);
  if (!call) {
    unaryError(res, { code: GrpcStatus.UNIMPLEMENTED, details: `unknown service ${route.grpcPath.slice(1, route.grpcPath.lastIndexOf('/'))}` }, true);
    return;
  }
  /** The call ended with `status`, or the gateway's own deadline passed (`fromCall` false). */
  const ended = (status: CallStatus, fromCall: boolean): void => {
    clearTimeout(timer);
    if (res.writableEnded) return;
    if (status.code === GrpcStatus.OK) {
      startStream(false);
      res.end();
    } else if (!res.headersSent) {
      // A stream's first answer is awaited as its gRPC headers: the gateway's own deadline
      // passing meanwhile fails that wait, which grpc-gateway answers as a unary error.
      if (!route.responseStream || !fromCall) unaryError(res, status, fromCall);
      else {
        res.writeHead(httpStatusOf(status.code), { 'Content-Type': 'application/json' });
        res.end(streamErrorLine(status));
      }
    } else res.end(streamErrorLine(status));
  };
  call.once('finish', () => ended(call.pendingStatus!, true));
  // The gRPC client's deadline, in grpc-gateway: once it passes the call is cancelled and the
  // answer is the client's own DeadlineExceeded; a deadline that passed before the request
  // was read fails the call before it starts, as grpc-go's client checks it first.
  const deadlineAt = deadline.at;
  const expire = (): void => {
    stream.listener?.onReset();
    ended({ code: GrpcStatus.DEADLINE_EXCEEDED, details: 'context deadline exceeded' }, false);
  };
  const timer = deadlineAt === undefined ? undefined : setTimeout(expire, Math.max(0, deadlineAt - performance.now()));
  const mayStart = (): boolean => {
    if (deadlineAt === undefined || performance.now() < deadlineAt) return true;
    expire();
    return false;
  };
  // The client went away before the answer was complete: cancel the call, as grpc-gateway's
  // request context does.
  res.on('close', () => {
    clearTimeout(timer);
    if (!res.writableFinished) stream.listener?.onReset();
  });
  readRequests(route, req, stream, res, mayStart);
}

/**
 * Feeds the request body to the call as it arrives: the first JSON value of a unary call's
 * body (an empty body is an empty request), or every value of a streaming call's body. The
 * first request goes only if `mayStart()` says so (else the caller has answered).
 */
function readRequests(route: Route, req: http.IncomingMessage, stream: GatewayStream, res: http.ServerResponse, mayStart: () => boolean): void {
  let text = '';
  let sent = 0;
  let stopped = false;
  const fail = (err: JsonDecodeError): void => {
    stopped = true;
    if (sent === 0) {
      // grpc-gateway decodes the first request before it waits for the call's headers, and
      // answers its error: InvalidArgument for a unary call's, the bare error (Unknown) for a
      // streaming call's.
      stream.listener?.onReset();
      unaryError(res, { code: route.requestStream ? GrpcStatus.UNKNOWN : GrpcStatus.INVALID_ARGUMENT, details: err.message }, false);
    } else {
      // A later bad value ends the requests (CloseSend); the call goes on.
      stream.listener?.onEnd();
    }
  };
  const send = (value: RawJson): boolean => {
    let framed: Buffer;
    try {
      framed = decodeRequest(route.request, value);
    } catch (err) {
      if (err instanceof JsonNilMessage) {
        // etcd's handler panics: net/http drops the connection without an answer.
        stopped = true;
        stream.listener?.onReset();
        res.destroy();
        return false;
      }
      if (!(err instanceof JsonDecodeError)) throw err;
      fail(err);
      return false;
    }
    if (sent === 0 && !mayStart()) {
      stopped = true;
      return false;
    }
    sent++;
    stream.listener?.onData(framed);
    return true;
  };
  const finish = (): void => {
    stopped = true;
    stream.listener?.onEnd();
  };
  /** Sends what the body holds so far; `final` once it is complete. */
  const feed = (final: boolean): void => {
    const { values, rest, error } = readJsonValues(text, final);
    text = text.slice(rest);
    for (const value of values) {
      if (!send(value)) return;
      if (!route.requestStream) return finish();
    }
    if (error) return fail(error);
    if (!final) return;
    // An empty body is io.EOF to grpc-gateway: a unary call gets an empty request.
    if (!route.requestStream && sent === 0 && !send({ kind: 'null' })) return;
    finish();
  };
  req.setEncoding('latin1');
  req.on('data', (chunk: string) => {
    if (stopped) return;
    text += chunk;
    // As Go's json.Decoder, a unary call's request is decoded once its first value is whole,
    // without waiting for the body's end (a WebSocket's body never ends).
    feed(false);
  });
  req.on('end', () => {
    if (!stopped) feed(true);
  });
}

/** The `Authorization` etcd's WebSocket proxy makes of a `Sec-WebSocket-Protocol: Bearer, <token>` header. */
function subProtocolAuthorization(header: string): string {
  const at = header.indexOf('Bearer,');
  return at < 0 ? '' : `Bearer ${header.slice(at + 'Bearer,'.length).trim()}`;
}

/**
 * The response side of a gateway request made over a WebSocket: what the gateway writes is cut
 * into lines and each non-empty line sent as a text message, as etcd's proxy
 * (tmc/grpc-websocket-proxy) scans the response; status codes and headers are dropped. The
 * end of the answer closes the connection without a close frame, as the proxy's does.
 */
class WebSocketResponse extends EventEmitter {
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  readonly writableNeedDrain = false;
  private pending = '';

  constructor(private readonly ws: WebSocket) {
    super();
  }

  setHeader(): this {
    return this;
  }

  writeHead(): this {
    this.headersSent = true;
    return this;
  }

  addTrailers(): void {}

  write(chunk: string | Buffer): boolean {
    if (this.writableEnded) return false;
    this.headersSent = true;
    const lines = (this.pending + chunk.toString()).split('\n');
    this.pending = lines.pop()!;
    for (const line of lines) if (line !== '') this.ws.send(line);
    return true;
  }

  end(chunk?: string | Buffer): this {
    if (this.writableEnded) return this;
    if (chunk !== undefined) this.write(chunk);
    if (this.pending !== '') this.ws.send(this.pending);
    this.writableEnded = true;
    this.writableFinished = true;
    this.emit('finish');
    this.emit('close');
    this.ws.terminate();
    return this;
  }

  /** The client went away first. */
  aborted(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    this.emit('close');
  }
}

/**
 * The gateway over WebSockets, as etcd wraps it in tmc/grpc-websocket-proxy: an upgrade request
 * to a `/v3/` path becomes a POST whose body is the client's messages, each followed by a
 * newline, and whose answer comes back a line per message (see WebSocketResponse). Origin and
 * Referer are passed on; `Sec-WebSocket-Protocol: Bearer, <token>` and a `token` cookie become
 * `Authorization: Bearer <token>`.
 */
export function gatewayWebSocket(gateway: GatewayHandler): WebSocketHandler {
  // The proxy's answer names a subprotocol only when the offer starts with `Bearer`: then `Bearer`.
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (_offered, req) => (req.headers['sec-websocket-protocol']?.startsWith('Bearer') ? 'Bearer' : false),
  });
  return (req, socket, head, path) => {
    const protocol = req.headers['sec-websocket-protocol'];
    wss.handleUpgrade(req, socket, head, (ws) => {
      const body = new Readable({ read() {} }) as Readable & Record<string, unknown>;
      const rawHeaders: string[] = [];
      for (const name of ['origin', 'referer']) {
        const value = req.headers[name];
        if (typeof value === 'string') rawHeaders.push(name, value);
      }
      if (typeof protocol === 'string' && protocol !== '') rawHeaders.push('authorization', subProtocolAuthorization(protocol));
      const cookie = /(?:^|;\s*)token=([^;]*)/.exec(req.headers.cookie ?? '');
      if (cookie) rawHeaders.push('authorization', `Bearer ${cookie[1]}`);
      body.method = 'POST';
      body.url = req.url;
      body.rawHeaders = rawHeaders;
      body.headers = Object.fromEntries(rawHeaders.flatMap((v, i) => (i % 2 === 0 ? [[v, rawHeaders[i + 1]]] : [])));
      const res = new WebSocketResponse(ws);
      ws.on('message', (data: Buffer) => body.push(`${data.toString()}\n`));
      ws.on('close', () => {
        body.push(null);
        res.aborted();
      });
      gateway(body as unknown as http.IncomingMessage, res as unknown as http.ServerResponse, path);
    });
  };
}
