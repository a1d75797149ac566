/**
 * Plain HTTP requests on our HTTP/2 connections: a TLS client that negotiates h2 (curl does)
 * sends /health, /metrics and gRPC-gateway requests on the same connections as gRPC calls, and
 * etcd (Go's net/http HTTP/2 server) answers them with its HTTP handlers. This gives those
 * handlers the part of Node's `IncomingMessage` and `ServerResponse` they use, over one
 * H2Stream: the request as a readable stream of its DATA, and a response with headers, a body
 * written at once or in parts (flow control and back-pressure through the stream), and
 * trailers. HTTP/1.1-only headers (Connection, Keep-Alive, Transfer-Encoding) are dropped, as
 * HTTP/2 forbids them.
 */
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { encodeHeaders, type H2Stream, type HeaderField } from './h2-connection.js';

/** Headers HTTP/2 forbids (RFC 9113 §8.2.2). */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

/** The response side: what `ServerResponse` offers the HTTP handlers, on an HTTP/2 stream. */
class H2Response extends EventEmitter {
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  private readonly stream: H2Stream;
  private readonly headers = new Map<string, string>();
  private statusCode = 200;
  private trailers: HeaderField[] = [];

  constructor(stream: H2Stream) {
    super();
    this.stream = stream;
    stream.onDrain = () => this.emit('drain');
  }

  get writableNeedDrain(): boolean {
    return this.stream.blocked;
  }

  setHeader(name: string, value: string | number): this {
    this.headers.set(name.toLowerCase(), String(value));
    return this;
  }

  writeHead(code: number, headers: Record<string, string> = {}): this {
    this.statusCode = code;
    for (const [name, value] of Object.entries(headers)) this.setHeader(name, value);
    return this;
  }

  addTrailers(trailers: Record<string, string>): void {
    for (const [name, value] of Object.entries(trailers)) this.trailers.push([name.toLowerCase(), value]);
  }

  write(chunk: string | Buffer): boolean {
    if (this.writableEnded) return false;
    this.sendHead(false);
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (data.length > 0) this.stream.sendData(data);
    return !this.stream.blocked;
  }

  end(chunk?: string | Buffer): this {
    if (this.writableEnded) return this;
    const data = chunk === undefined ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const empty = data === undefined || data.length === 0;
    if (!this.headersSent && empty && this.trailers.length === 0) {
      this.sendHead(true);
    } else {
      if (!empty) this.write(data);
      this.sendHead(false);
      // Trailers, or an empty header block, end the stream after the DATA.
      this.stream.sendTrailers(encodeHeaders(this.trailers));
    }
    this.writableEnded = true;
    this.writableFinished = true;
    this.emit('finish');
    this.emit('close');
    return this;
  }

  /** The client reset the stream or the connection closed before the answer was complete. */
  aborted(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    this.emit('close');
  }

  private sendHead(endStream: boolean): void {
    if (this.headersSent) return;
    this.headersSent = true;
    const fields: HeaderField[] = [[':status', String(this.statusCode)]];
    for (const [name, value] of this.headers) if (!CONNECTION_HEADERS.has(name) && name !== 'trailer') fields.push([name, value]);
    this.stream.sendHeaders(encodeHeaders(fields), endStream);
  }
}

/**
 * Serves the request on `stream` (not a gRPC call) with `handler`, as Node's HTTP server would;
 * `socket` is the connection's, and `:authority` is the request's Host, as Go takes it.
 */
export function serveHttp(stream: H2Stream, handler: http.RequestListener, socket: Duplex): void {
  const req = new Readable({ read() {} }) as Readable & Record<string, unknown>;
  const headers: Record<string, string> = {};
  const rawHeaders: string[] = [];
  for (const [name, value] of stream.headers) {
    if (name.startsWith(':')) continue;
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    rawHeaders.push(name, value);
  }
  const authority = stream.header(':authority');
  if (authority !== undefined) headers.host = authority;
  req.socket = socket;
  req.method = stream.header(':method') ?? 'GET';
  req.url = stream.header(':path') ?? '/';
  req.headers = headers;
  req.rawHeaders = rawHeaders;
  const res = new H2Response(stream);
  stream.listener = {
    onData: (data) => {
      if (data.length > 0) req.push(data);
    },
    onEnd: () => req.push(null),
    onReset: () => {
      res.aborted();
      req.destroy();
    },
  };
  handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);
}
