/**
 * Client listeners: one TCP (or TLS) port per `--listen-client-urls` entry serving both gRPC
 * and plain HTTP, as etcd's cmux does. A plaintext connection whose first bytes are the HTTP/2
 * preface goes to the gRPC server; anything else goes to the HTTP/1.1 handler (/health,
 * /metrics, /version). Over TLS, ALPN http/1.1 goes to the HTTP handler and h2 to gRPC, except
 * that an HTTP/2 connection whose first request is not a gRPC call (by content-type, as etcd
 * decides) goes to the same handlers over HTTP/2.
 *
 * A gRPC connection, plaintext or TLS, then runs on the socket's native handle (for TLS, the
 * TLS socket's) when its first request's `:authority` is valid, and through the JS duplex with
 * the authority fixer otherwise (see h2-preamble.ts).
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';
import { AuthorityFixer } from './h2-authority.js';
import { EMPTY_SETTINGS, H2Preamble } from './h2-preamble.js';

/** The first bytes of every HTTP/2 connection ("PRI * HTTP/2.0\r\n…"). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** A bound client listener. */
export interface ClientListener {
  /** The URL as configured. */
  readonly url: string;
  /** The URL with the port actually bound (differs when the configured port was 0). */
  readonly boundUrl: string;
  /** Stops accepting connections and closes existing ones. */
  close(): Promise<void>;
  /** gRPC connections accepted so far, by path: the native handle, or the JS duplex with the authority fixer. */
  readonly connections: { native: number; fixed: number };
}

/** A client that sends neither its first request nor the ACK of our SETTINGS in this long is dropped. */
const PREAMBLE_TIMEOUT_MS = 30_000;

/** Host for net.listen: etcd binds "localhost" to the IPv4 loopback. */
function listenHost(hostname: string): string {
  if (hostname === 'localhost') return '127.0.0.1';
  return hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Binds `url` (http:// or https://; unix sockets are not supported) and routes connections to
 * the gRPC server or the HTTP handler. Throws when the port cannot be bound.
 */
export async function listenClientUrl(
  url: string,
  grpc: GrpcServer,
  httpHandler: http.RequestListener | undefined,
  tlsOptions: tls.TlsOptions | undefined,
): Promise<ClientListener> {
  const u = new URL(url);
  const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
  const httpServer = httpHandler ? http.createServer(httpHandler) : undefined;
  // HTTP/2 requests that are not gRPC calls, on TLS connections (see routeH2). The handlers use
  // only the request's method and url and the response's writeHead and end, which Node's
  // HTTP/2 compatibility API provides with the same meaning.
  const h2HttpServer = httpHandler
    ? http2.createServer((req, res) => httpHandler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse))
    : undefined;
  const sockets = new Set<net.Socket>();
  const connections = { native: 0, fixed: 0 };

  /** An HTTP/1.1 connection: to the HTTP handler (/health, /metrics, /version), if any. */
  const routeHttp = (socket: net.Socket): void => {
    if (httpServer) httpServer.emit('connection', socket);
    else socket.destroy();
  };

  /**
   * An HTTP/2 connection, plaintext or TLS: read its first request, then hand it to the gRPC
   * session, natively if it can be. On TLS (`httpToo`) a first request that is not a gRPC call
   * goes to the HTTP handler instead, as etcd's TLS listener sends it there by content-type
   * (`curl https://…/health` negotiates HTTP/2); on plaintext etcd's cmux gives every HTTP/2
   * connection to gRPC, and so do we.
   */
  const routeH2 = (socket: net.Socket, httpToo: boolean): void => {
    const preamble = new H2Preamble((b) => socket.write(b));
    const timer = setTimeout(() => socket.destroy(), PREAMBLE_TIMEOUT_MS).unref();
    const onData = (chunk: Buffer): void => {
      let verdict;
      try {
        verdict = preamble.feed(chunk);
      } catch {
        socket.destroy();
        return;
      }
      if (!verdict) return;
      socket.off('data', onData);
      socket.pause();
      clearTimeout(timer);
      if (httpToo && !verdict.grpc && h2HttpServer) {
        socket.unshift(verdict.replay);
        h2HttpServer.emit('connection', socket);
      } else if (verdict.path === 'native') {
        // Node's session reads bytes already buffered in the socket before its native reads.
        connections.native++;
        socket.unshift(verdict.replay);
        injector.injectConnection(socket);
      } else {
        connections.fixed++;
        injector.injectConnection(new H2SocketDuplex(socket, verdict.replay));
      }
    };
    socket.once('close', () => clearTimeout(timer));
    socket.on('data', onData);
    socket.write(EMPTY_SETTINGS);
    socket.resume();
  };

  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };

  // noDelay: gRPC answers are small writes; with Nagle on, delayed ACKs add ~40 ms to each.
  let server: net.Server;
  if (u.protocol === 'https:') {
    if (!tlsOptions) throw new Error(`listen URL ${url} needs TLS: give --cert-file and --key-file, or --auto-tls`);
    server = tls.createServer({ ...tlsOptions, noDelay: true, ALPNProtocols: ['h2', 'http/1.1'] }, (socket) => {
      if (socket.alpnProtocol === 'h2') routeH2(socket, true);
      else routeHttp(socket);
    });
    server.on('connection', track);
  } else if (u.protocol === 'http:') {
    server = net.createServer({ noDelay: true }, (socket) => {
      track(socket);
      sniff(socket, (isH2) => (isH2 ? routeH2(socket, false) : routeHttp(socket)));
    });
  } else {
    throw new Error(`unsupported listen URL scheme ${u.protocol} in ${url}`);
  }
  server.on('error', () => {});

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listenHost(u.hostname), port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;
  const bound = new URL(url);
  bound.port = String(addr.port);

  return {
    url,
    boundUrl: bound.origin,
    connections,
    close: async () => {
      injector.destroy();
      httpServer?.close();
      h2HttpServer?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
  };
}

/**
 * The duplex an HTTP/2 session runs on when the client's `:authority` needs fixing: writes go
 * to the socket; reads come from the socket through the AuthorityFixer (see h2-authority.ts),
 * starting with `replay`, the bytes already read from it. No piping; batches of writes go out
 * corked.
 */
class H2SocketDuplex extends Duplex {
  /** The client connection. */
  private readonly socket: net.Socket;
  /** The frame rewriter for bytes from the client. */
  private readonly fixer = new AuthorityFixer();

  constructor(socket: net.Socket, replay: Buffer) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    const out = (b: Buffer): void => {
      if (!this.push(b)) socket.pause();
    };
    this.fixer.feed(replay, out);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.fixer.feed(chunk, out);
      } catch (err) {
        this.destroy(err as Error);
      }
    });
    socket.on('end', () => this.push(null));
    socket.on('close', () => this.destroy());
    socket.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk);
    this.socket.write(chunks[chunks.length - 1]!.chunk, cb);
    this.socket.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

/** Reads until the HTTP/2 preface can be told apart from HTTP/1, then puts the bytes back. */
function sniff(socket: net.Socket, done: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2 && n < H2_PREFACE.length) return; // need more bytes to be sure
    socket.off('data', onData);
    socket.pause();
    socket.unshift(seen);
    done(isH2);
    if (!isH2) socket.resume();
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
}
