/**
 * Listeners: one TCP (or TLS) port, or unix socket, per `--listen-peer-urls`,
 * `--listen-client-urls` or `--listen-metrics-urls` entry, serving both gRPC and plain HTTP,
 * as etcd's cmux does. A plaintext connection whose first bytes are the HTTP/2
 * preface goes to the gRPC server; anything else goes to the HTTP/1.1 handler (/health,
 * /metrics, /version). Over TLS, ALPN http/1.1 goes to the HTTP handler and h2 to the gRPC
 * server, which sends the requests of such a connection that are not gRPC calls (by
 * content-type, as etcd decides) to the same handlers.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { isTlsUrl } from '../config.js';
import { goErrnoText } from '../go-format.js';
import { goAddress } from './tls.js';
import { CLIENT_PREFACE } from './transport/h2-preface.js';
import type { GrpcServer } from './transport/grpc-server.js';

/** A bound client listener. */
export interface ClientListener {
  /** The URL as configured. */
  readonly url: string;
  /** The URL with the port actually bound (differs when the configured port was 0). */
  readonly boundUrl: string;
  /** The bound address as Go prints a listener's (`[::]:2379`, `127.0.0.1:2379`, a socket's path). */
  readonly address: string;
  /**
   * Stops accepting connections and closes existing ones: HTTP/1.1 connections at once, gRPC
   * connections once the gRPC server has ended them (GOAWAY, then the end of the socket; see
   * `GrpcServer.close`), or after GRPC_CLOSE_GRACE_MS.
   */
  close(): Promise<void>;
}

/** How long a closing listener lets a gRPC connection end before destroying its socket. */
const GRPC_CLOSE_GRACE_MS = 1000;

/**
 * The backlog of every listening socket, as Go's `net.Listen` takes it (`maxListenerBacklog`):
 * the kernel's `net.core.somaxconn`, or 128 when it cannot be read. Node's default is 511, which
 * drops connections of a burst that etcd queues.
 */
const LISTEN_BACKLOG = ((): number => {
  let n = 0;
  try {
    n = Number.parseInt(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8'), 10);
  } catch {
    // Not Linux, or no /proc: Go's syscall.SOMAXCONN.
  }
  return Number.isInteger(n) && n > 0 ? Math.min(n, 2 ** 31 - 1) : 128;
})();

/** Host for net.listen: etcd binds "localhost" to the IPv4 loopback. */
function listenHost(hostname: string): string {
  if (hostname === 'localhost') return '127.0.0.1';
  // Go listens on 0.0.0.0 with one IPv6 socket that takes IPv4 too (Node's `::` does the same).
  if (hostname === '0.0.0.0') return '::';
  return hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Where a unix:// or unixs:// URL listens, as etcd (`embed`, `transport.NewUnixListener`) does:
 * the socket file named by the URL's host and path, `unix://localhost:2379` being the file
 * `localhost:2379` in the working directory.
 */
function unixSocketPath(u: URL): string {
  return u.host + u.pathname;
}

/** Where a listener sends its connections (see {@link bindUrl}). */
export interface ListenerRoutes {
  /** Serves HTTP/2 connections (and, over TLS, the non-gRPC requests on them through `http`). */
  readonly grpc: GrpcServer;
  /** Serves HTTP/1.1 connections; without it they are closed. */
  readonly http?: http.RequestListener;
  /** Serves HTTP/1.1 upgrade requests; returns false for one to be served as a plain request. */
  readonly upgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => boolean;
  /** Over TLS, whether a connection may stay once its handshake is done (etcd's `VerifyPeerCertificate`). */
  readonly admit?: (socket: tls.TLSSocket) => boolean;
  /**
   * Over TLS, told of each connection whose handshake failed (etcd's `HandshakeFailure`), with
   * the client's address as Go writes it (`127.0.0.1:5000`, `[::1]:5000`): a socket the failure
   * closed no longer knows it.
   */
  readonly handshakeFailed?: (socket: tls.TLSSocket, err: Error, remoteAddr: string) => void;
}

/** A bound listener that holds the connections it accepts until it is told where to send them. */
export interface BoundListener extends ClientListener {
  /** Sends the connections accepted so far, and all later ones, to `routes`. */
  serve(routes: ListenerRoutes): void;
}

/**
 * Binds `url` (http://, https://, or a unix socket: unix://, unixs:// with TLS), as Go's
 * `net.Listen` does before etcd serves: connections that arrive before `serve` wait, as in a
 * listen backlog. A unix socket file left by an earlier run is replaced, and removed again on
 * close, as etcd does. Throws when the address cannot be bound, in Go's words.
 */
export async function bindUrl(url: string, tlsOptions: tls.TlsOptions | undefined): Promise<BoundListener> {
  // Go's net.Listen refuses a port out of range (the URL itself parses).
  const port = /^[a-z]+:\/\/(?:\[[^\]]*\]|[^/:]*):(\d+)/.exec(url)?.[1];
  if (port !== undefined && Number(port) > 65535) throw new Error(`listen tcp: address ${port}: invalid port`);
  const u = new URL(url);
  let routes: ListenerRoutes | undefined;
  let httpServer: http.Server | undefined;
  /** Connections accepted before `serve`, with what to do with each then. */
  const held: ((to: ListenerRoutes) => void)[] = [];
  const sockets = new Set<net.Socket>();
  /** Plaintext sockets given to the gRPC server (on a TLS listener every socket is treated so). */
  const grpcSockets = new WeakSet<net.Socket>();

  /** An HTTP/1.1 connection: to the HTTP handler, if any. */
  const routeHttp = (socket: net.Socket): void => {
    if (httpServer) httpServer.emit('connection', socket);
    else socket.destroy();
  };
  const whenServing = (route: (to: ListenerRoutes) => void): void => {
    if (routes) route(routes);
    else held.push(route);
  };

  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };

  // noDelay: gRPC answers are small writes; with Nagle on, delayed ACKs add ~40 ms to each.
  let server: net.Server;
  const unix = u.protocol === 'unix:' || u.protocol === 'unixs:';
  const secure = isTlsUrl(url);
  if (secure) {
    if (!tlsOptions) throw new Error(`listen URL ${url} needs TLS settings (a certificate and key, or auto TLS)`);
    server = tls.createServer({ ...tlsOptions, noDelay: true, ALPNProtocols: ['h2', 'http/1.1'] }, (socket) =>
      whenServing((to) => {
        if (to.admit && !to.admit(socket)) socket.destroy();
        else if (socket.alpnProtocol === 'h2') to.grpc.handleConnection(socket, to.http);
        else routeHttp(socket);
      }),
    );
    // The client's address, kept by the raw socket, which Node's TLS socket names `_parent`.
    const addresses = new WeakMap<net.Socket, string>();
    server.on('connection', (raw: net.Socket) => {
      track(raw);
      addresses.set(raw, goAddress(raw));
    });
    server.on('tlsClientError', (err, socket) => {
      const raw = (socket as unknown as { _parent?: net.Socket | null })._parent;
      const remoteAddr = (raw && addresses.get(raw)) ?? goAddress(socket);
      whenServing((to) => to.handshakeFailed?.(socket, err, remoteAddr));
    });
  } else if (u.protocol === 'http:' || u.protocol === 'unix:') {
    server = net.createServer({ noDelay: true }, (socket) => {
      track(socket);
      whenServing((to) =>
        sniff(socket, (isH2) => {
          if (!isH2) return routeHttp(socket);
          grpcSockets.add(socket);
          to.grpc.handleConnection(socket, undefined);
        }),
      );
    });
  } else {
    throw new Error(`unsupported listen URL scheme ${u.protocol} in ${url}`);
  }
  server.on('error', () => {});

  const socketPath = unix ? unixSocketPath(u) : undefined;
  if (socketPath !== undefined) fs.rmSync(socketPath, { force: true });
  const listen = (address: net.ListenOptions) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address, () => {
        server.off('error', reject);
        resolve();
      });
    });
  const portNumber = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  await listen(socketPath !== undefined ? { path: socketPath, backlog: LISTEN_BACKLOG } : { host: listenHost(u.hostname), port: portNumber, backlog: LISTEN_BACKLOG })
    .catch((err: NodeJS.ErrnoException) => {
      // Without IPv6, Go listens on 0.0.0.0 with an IPv4 socket.
      if (u.hostname !== '0.0.0.0' || err.code !== 'EAFNOSUPPORT') throw err;
      return listen({ host: '0.0.0.0', port: portNumber, backlog: LISTEN_BACKLOG });
    })
    .catch((err: NodeJS.ErrnoException) => {
      // Go's words for a listener that cannot bind (`listen tcp host:port: bind: …`).
      const text = goErrnoText(err.code);
      if (text === undefined || socketPath !== undefined) throw err;
      const host = u.hostname === 'localhost' ? '127.0.0.1' : u.hostname;
      throw new Error(`listen tcp ${host}:${portNumber}: bind: ${text}`, { cause: err });
    });
  const bound = new URL(url);
  const info = server.address();
  if (!unix) bound.port = String((info as net.AddressInfo).port);
  // etcd prints a unix URL's address as the URL without its scheme.
  const boundAddress =
    typeof info === 'object' && info !== null ? (info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`) : url.replace(/^[a-z]+:\/\//, '');

  return {
    url,
    // A unix URL's origin is "null": it is given back as configured.
    boundUrl: unix ? url : bound.origin,
    address: boundAddress,
    serve: (to) => {
      routes = to;
      if (to.http) {
        // Go's server, as etcd runs it, closes no idle connection and waits for a request (a
        // gateway stream's body included) as long as it takes; it takes up to 1 MiB of headers
        // and checks the Host header itself (see `goRequestChecks`).
        const options = { keepAliveTimeout: 0, requestTimeout: 0, headersTimeout: 0, maxHeaderSize: GO_MAX_HEADER_BYTES, requireHostHeader: false };
        const created = http.createServer(options, goRequestChecks(to.http));
        created.on('clientError', goClientError);
        const upgrade = to.upgrade;
        if (upgrade) {
          created.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
            if (!upgrade(req, socket, head)) replayWithoutUpgrade(created, req, socket, head);
          });
        }
        httpServer = created;
      }
      for (const route of held.splice(0)) route(to);
    },
    close: async () => {
      httpServer?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) {
          if (secure || grpcSockets.has(s)) setTimeout(() => s.destroy(), GRPC_CLOSE_GRACE_MS).unref();
          else s.destroy();
        }
      });
    },
  };
}

/** Go's `http.DefaultMaxHeaderBytes` plus the slack its server allows. */
const GO_MAX_HEADER_BYTES = (1 << 20) + 4096;

/** Go's answer to a request it refuses before any handler: `status`, its text, then the connection closes. */
export function goRefusal(socket: Duplex, status: string, body = status): void {
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
}

/** `handler`, behind the Host checks Go's server makes: one Host header, required from HTTP/1.1 on. */
function goRequestChecks(handler: http.RequestListener): http.RequestListener {
  return (req, res) => {
    const hosts = req.rawHeaders.filter((_v, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'host').length;
    if (hosts > 1) return goRefusal(req.socket, '400 Bad Request');
    if (hosts === 0 && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      return goRefusal(req.socket, '400 Bad Request: missing required Host header');
    }
    handler(req, res);
  };
}

/** Node's parser refused a request: the answer Go's server gives to the same fault. */
function goClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable) return void socket.destroy();
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return goRefusal(socket, '431 Request Header Fields Too Large');
    case 'HPE_INVALID_HEADER_TOKEN':
      return goRefusal(socket, '400 Bad Request: invalid header name');
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return goRefusal(socket, '501 Not Implemented', 'Unsupported transfer encoding');
    default:
      return goRefusal(socket, '400 Bad Request');
  }
}

/**
 * Serves an upgrade request the upgrade handler declined as a plain request: its head is
 * written back into the socket without the Upgrade (and HTTP2-Settings) headers and the
 * connection handed to the HTTP server again, which then reads the request and its body as it
 * reads any other (Node stops reading at an upgrade request's head).
 */
function replayWithoutUpgrade(server: http.Server, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'upgrade' || lower === 'http2-settings') continue;
    if (lower === 'connection') {
      const kept = raw[i + 1]!.split(',').map((t) => t.trim()).filter((t) => !/^(upgrade|http2-settings)$/i.test(t));
      if (kept.length > 0) lines.push(`${name}: ${kept.join(', ')}`);
      continue;
    }
    lines.push(`${name}: ${raw[i + 1]}`);
  }
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]));
  server.emit('connection', socket);
}

/** Reads until the HTTP/2 preface can be told apart from HTTP/1, then puts the bytes back. */
function sniff(socket: net.Socket, done: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, CLIENT_PREFACE.length);
    const isH2 = seen.subarray(0, n).equals(CLIENT_PREFACE.subarray(0, n));
    if (isH2 && n < CLIENT_PREFACE.length) return; // need more bytes to be sure
    socket.off('data', onData);
    socket.pause();
    socket.unshift(seen);
    done(isH2);
    socket.resume();
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
}
