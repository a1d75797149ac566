/**
 * The HTTP/1.1 endpoints served next to gRPC on every client and metrics URL, answering as etcd
 * 3.4 does (status codes, bodies and headers measured on the real etcd):
 *
 * - `GET /health`: 200 `{"health":"true"}`, or 503 `{"health":"false"}` + newline while an
 *   alarm is active; `?exclude=NOSPACE` (repeatable) ignores that alarm. A healthy answer costs
 *   one raft entry, as etcd proposes an empty v2 QGET through raft to prove a quorum
 *   (`EtcdServer.quorumGet`): `endpoint status` shows the raft index grow with each probe.
 * - `GET /livez`, `GET /readyz` (etcd 3.4.29 and 3.5.11 on; Kubernetes probes them): named
 *   checks ({@link PROBE_CHECKS}); 200 `ok` when all pass (each check's line before it with
 *   `?verbose`), else 503 with every check's line; `?exclude=<name>` (repeatable) skips one;
 *   `/livez/<name>`, `/readyz/<name>` run one.
 * - `GET /version`: `{"etcdserver":"…","etcdcluster":"…"}` as application/json.
 * - `/metrics`: the Prometheus text exposition of the server's registry.
 * - `PUT /config/local/log`: capnslog's level, set at run time (etcd 3.4; see `setLogLevel`).
 *
 * Other methods on /health and /version get 405 with `Allow: GET` (`Allow: PUT` on
 * /config/local/log); other paths 404. On client URLs, etcd's access controller comes first
 * (`HttpHandlerOptions.access`: host whitelist, the gateway's client-certificate check, CORS).
 */
import type http from 'node:http';
import { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { AlarmType, RangeRequest } from '../../proto/gen/rpc.gen.js';
import type { EtcdServer } from '../etcd-server.js';
import { CLUSTER_VERSION, SERVER_VERSION } from '../../version.js';
import type { ServerMetrics } from '../metrics.js';
import type { GatewayHandler } from './gateway.js';
import { verifiedCommonName } from '../transport/grpc-server.js';
import { splitHostPort } from '../../cli/flags.js';
import { readJsonValues } from './go-json.js';
import { goRefusal } from '../listener.js';
import { parseCapnslogLevel, plog, setCapnslogLevel } from '../../logger.js';

/** etcd `addCORSHeader`: what a client-URL answer says to an allowed `origin`. */
function addCorsHeaders(res: http.ServerResponse, origin: string): void {
  res.setHeader('Access-Control-Allow-Methods', 'POST, GET, OPTIONS, PUT, DELETE');
  res.setHeader('Access-Control-Allow-Origin', origin);
  res.setHeader('Access-Control-Allow-Headers', 'accept, content-type, authorization');
}

/** etcd `AccessController.OriginAllowed` / `IsHostWhitelisted`: an empty list or `*` allows any. */
function allowed(list: readonly string[], value: string): boolean {
  return list.length === 0 || list.includes('*') || list.includes(value);
}

/** etcd's answer to a plaintext request naming a host `--host-whitelist` does not list (`errCVE20185702`). */
function dnsRebindingRefusal(host: string): string {
  return `
etcd received your request, but the Host header was unrecognized.

To fix this, choose one of the following options:
- Enable TLS, then any HTTPS request will be allowed.
- Add the hostname you want to use to the whitelist in settings.
  - e.g. etcd --host-whitelist ${JSON.stringify(host)}

This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).
`;
}

/** Go's `httputil.GetHostname`: the Host header without its port. */
function hostname(host: string): string {
  return splitHostPort(host)?.host ?? host;
}

/**
 * A whole answer, framed as Go's net/http frames a handler's single write: with its
 * Content-Length below 2048 bytes, chunked from there on.
 */
export function reply(res: http.ServerResponse, code: number, headers: Record<string, string>, body: string | Uint8Array = ''): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(code, bytes.length < 2048 ? { ...headers, 'Content-Length': String(bytes.length) } : headers);
  res.end(bytes);
}

/** Go's `http.Error`: plain text, `nosniff`, the message and a newline. */
export function httpError(res: http.ServerResponse, code: number, message: string, headers: Record<string, string> = {}): void {
  reply(res, code, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }, `${message}\n`);
}

/** etcd `allowMethod`: false (after answering 405) unless the request uses `method`. */
export function allowMethod(req: http.IncomingMessage, res: http.ServerResponse, method: string): boolean {
  if (req.method === method) return true;
  httpError(res, 405, 'Method Not Allowed', { Allow: method });
  return false;
}

/** etcd's `WriteError` of an HTTP error: its message as JSON. */
function jsonError(res: http.ServerResponse, code: number, message: string): void {
  reply(res, code, { 'Content-Type': 'application/json' }, JSON.stringify({ message }));
}

/**
 * etcd 3.4 `logHandleFunc` (`PUT /config/local/log`, `{"Level":"debug"}`): the first JSON value
 * of the body, whose `Level` (any case) names a capnslog level, which capnslog's lines follow
 * from then on; 204, or 400 `Invalid json body` / `Invalid log level <level>`.
 */
async function setLogLevel(req: http.IncomingMessage, res: http.ServerResponse, etcd: EtcdServer): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const [body] = readJsonValues(Buffer.concat(chunks).toString('latin1'), true).values;
  let level = '';
  if (body === undefined || (body.kind !== 'object' && body.kind !== 'null')) return jsonError(res, 400, 'Invalid json body');
  for (const [name, value] of body.kind === 'object' ? body.fields : []) {
    if (name.toLowerCase() !== 'level' || value.kind === 'null') continue;
    if (value.kind !== 'string') return jsonError(res, 400, 'Invalid json body');
    level = value.value;
  }
  const name = parseCapnslogLevel(level.toUpperCase());
  if (name === undefined) return jsonError(res, 400, `Invalid log level ${level}`);
  const text = `globalLogLevel set to ${JSON.stringify(name)}`;
  etcd.log.info({ level: name, ...plog('etcdserver/api/etcdhttp', 'N', text) }, 'set global log level');
  setCapnslogLevel(etcd.log, name);
  res.writeHead(204);
  res.end();
}

/** etcd `serveVersion` (`GET /version` on client and peer URLs): the server and cluster versions as JSON. */
export function serveVersion(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (!allowMethod(req, res, 'GET')) return;
  reply(res, 200, { 'Content-Type': 'application/json' }, JSON.stringify({ etcdserver: SERVER_VERSION, etcdcluster: CLUSTER_VERSION }));
}

/** etcd `checkHealth` for one member: unhealthy while an alarm not named in `exclude` is active. */
function healthy(etcd: EtcdServer, exclude: readonly string[]): boolean {
  return etcd.listAlarms().every((a) => exclude.includes(AlarmType[a.alarm]));
}

/**
 * The checks of etcd 3.5.17's /livez and /readyz (etcdhttp `installLivezEndpoints`,
 * `installReadyzEndpoints`), in the order they are registered there: each throws its reason.
 * A read check is a keys-only, one-key range as root, as etcd's `readCheck`; a single member
 * serves linearizable reads locally, so both read checks are the same read here.
 */
const PROBE_CHECKS: Readonly<Record<'livez' | 'readyz', readonly (readonly [string, (etcd: EtcdServer) => void])[]>> = {
  livez: [['serializable_read', readCheck]],
  readyz: [
    ['data_corruption', (etcd) => {
      if (etcd.listAlarms().some((a) => a.alarm === AlarmType.CORRUPT)) throw new Error('alarm activated: CORRUPT');
    }],
    ['serializable_read', readCheck],
    ['linearizable_read', readCheck],
  ],
};

/** etcd's `readCheck`: throws the range's error, e.g. once the server is stopping. */
function readCheck(etcd: EtcdServer): void {
  etcd.range({ ...RangeRequest.decode(new Uint8Array(0)), key: Buffer.from([0]), keysOnly: true, limit: 1n });
}

/**
 * Answers a /livez or /readyz request (etcdhttp `newHealthHandler`): runs the checks of `type`
 * but those `?exclude=` names, or only the check `only` (a sub path, where exclude does not
 * apply), and records each run in `metrics`.
 */
function probe(req: http.IncomingMessage, res: http.ServerResponse, url: RequestTarget, etcd: EtcdServer, metrics: ServerMetrics, type: 'livez' | 'readyz', only?: string): void {
  if (!allowMethod(req, res, 'GET')) return;
  const excluded = new Set(url.searchParams.getAll('exclude').filter((name) => name !== ''));
  const checks = PROBE_CHECKS[type].filter(([name]) => (only === undefined ? !excluded.has(name) : name === only));
  let report = '';
  let ok = true;
  for (const [name, check] of checks) {
    try {
      check(etcd);
      report += `[+]${name} ok\n`;
      metrics.probeChecked(type, name, true);
    } catch (err) {
      report += `[-]${name} failed: ${(err as Error).message}\n`;
      metrics.probeChecked(type, name, false);
      ok = false;
    }
  }
  if (!ok) {
    httpError(res, 503, report);
    return;
  }
  const body = `${url.searchParams.has('verbose') ? report : ''}ok\n`;
  reply(res, 200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }, body);
}

/** What a listener's HTTP handler serves besides /health, /version and /metrics. */
export interface HttpHandlerOptions {
  /**
   * The gRPC gateway, for paths under `/v3/` (and `/v3beta/`, which etcd rewrites to `/v3/`).
   * Client URLs get it unless `--enable-grpc-gateway=false`; etcd's metrics URLs serve none.
   */
  gateway?: GatewayHandler;
  /**
   * etcd's access controller of the client URLs (`accessController.ServeHTTP`); metrics URLs
   * have none. In its order: a plaintext request whose Host `--host-whitelist` does not list
   * is answered 421; with `--client-cert-auth` and auth on, a gateway request over TLS whose
   * verified client certificate names a CN is answered 400 (etcd will not take the CN as the
   * user there); every other answer gets CORS headers for the origins `--cors` allows, and
   * OPTIONS (a CORS preflight) is answered 200 on every path.
   */
  access?: { corsOrigins: readonly string[]; hostWhitelist: readonly string[]; clientCertAuth: boolean };
}

/** A request's path and query, as Go's server reads them. */
export interface RequestTarget {
  /**
   * The path as sent, percent-decoded (Go's `URL.Path`): `//x` is a path, not a host, and
   * `.`/`..` segments are kept (ServeMux cleans them).
   */
  readonly pathname: string;
  /** `?` and the query, or ''. */
  readonly search: string;
  readonly searchParams: URLSearchParams;
}

/**
 * A request's target: its path and query, or those of an absolute URL; undefined when the path
 * has a `%` not followed by two hex digits, which Go's server refuses before any handler (see
 * `badRequest`).
 */
export function requestTarget(req: http.IncomingMessage): RequestTarget | undefined {
  let target = req.url ?? '/';
  if (!target.startsWith('/')) {
    try {
      const u = new URL(target);
      target = u.pathname + u.search;
    } catch {
      target = '/';
    }
  }
  const q = target.indexOf('?');
  const search = q < 0 ? '' : target.slice(q);
  const raw = q < 0 ? target : target.slice(0, q);
  if (/%(?![0-9a-fA-F]{2})/.test(raw)) return undefined;
  const pathname = Buffer.from(raw.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString();
  return { pathname, search, searchParams: new URLSearchParams(search) };
}

/**
 * Go's server's answer to a request it cannot parse: `400 Bad Request`, its body ended by
 * closing the connection (over HTTP/1.1, written as Go writes it).
 */
export function badRequest(res: http.ServerResponse): void {
  if (res.req.httpVersionMajor === 1 && res.socket) return goRefusal(res.socket, '400 Bad Request');
  res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
  res.end('400 Bad Request');
}

/**
 * Go's `path.Clean` of a URL path, as http.ServeMux applies it: repeated slashes, `.` and `..`
 * removed, a trailing slash kept.
 */
export function cleanPath(p: string): string {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  const cleaned = `/${out.join('/')}`;
  return p.endsWith('/') && cleaned !== '/' ? `${cleaned}/` : cleaned;
}

/** http.ServeMux's redirect (301, Go's `http.Redirect`) to `location`. */
export function redirect(req: http.IncomingMessage, res: http.ServerResponse, location: string): void {
  const html = req.method === 'GET' || req.method === 'HEAD';
  reply(res, 301, { Location: location, ...(html ? { 'Content-Type': 'text/html; charset=utf-8' } : {}) }, req.method === 'GET' ? `<a href="${location}">Moved Permanently</a>.\n\n` : '');
}

/** The path the gateway sees: etcd rewrites `/v3beta/` to `/v3/`. */
function gatewayPath(pathname: string): string {
  return pathname.startsWith('/v3beta/') ? `/v3/${pathname.slice('/v3beta/'.length)}` : pathname;
}

/** Serves a WebSocket upgrade request to the gateway's `path` (see `gatewayWebSocket`). */
export type WebSocketHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer, path: string) => void;

/**
 * The handler of HTTP/1.1 upgrade requests: a WebSocket upgrade to a `/v3/` path goes to
 * `webSocket` (the gateway over WebSockets) and the handler returns true; for any other it
 * returns false, and the listener serves the request as a plain one, as Go's server does (it
 * ignores `Upgrade: h2c`, for one).
 */
export function upgradeHandler(webSocket: WebSocketHandler): (req: http.IncomingMessage, socket: Duplex, head: Buffer) => boolean {
  return (req, socket, head) => {
    const target = requestTarget(req);
    const path = target && gatewayPath(target.pathname);
    if (path === undefined || !path.startsWith('/v3/') || req.headers.upgrade?.toLowerCase() !== 'websocket') return false;
    webSocket(req, socket, head, path);
    return true;
  };
}

/** The request handler for etcd's HTTP endpoints of `etcd`, rendering `metrics` on /metrics. */
export function httpHandler(etcd: EtcdServer, metrics: ServerMetrics, options: HttpHandlerOptions = {}): http.RequestListener {
  const { gateway, access } = options;
  return (req, res) => {
    const url = requestTarget(req);
    if (!url) return badRequest(res);
    if (access) {
      const tlsSocket = req.socket instanceof TLSSocket ? req.socket : undefined;
      if (!tlsSocket) {
        const host = hostname(req.headers.host ?? '');
        if (!allowed(access.hostWhitelist, host)) {
          const text = `rejecting HTTP request from ${JSON.stringify(host)} to prevent DNS rebinding attacks`;
          etcd.log.warn({ host, ...plog('embed', 'W', text) }, 'rejecting HTTP request to prevent DNS rebinding attacks');
          httpError(res, 421, dnsRebindingRefusal(host));
          return;
        }
      } else if (access.clientCertAuth && gateway && etcd.auth.enabled && gatewayPath(url.pathname).startsWith('/v3/') && verifiedCommonName(tlsSocket)) {
        httpError(res, 400, 'CommonName of client sending a request against gateway will be ignored and not used as expected');
        return;
      }
      const origin = req.headers.origin;
      if (allowed(access.corsOrigins, '*')) addCorsHeaders(res, '*');
      else if (origin !== undefined && allowed(access.corsOrigins, origin)) addCorsHeaders(res, origin);
      if (req.method === 'OPTIONS') {
        reply(res, 200, {});
        return;
      }
    }
    if (gateway) {
      const path = gatewayPath(url.pathname);
      if (path === '/v3' || path.startsWith('/v3/')) {
        const cleaned = path === '/v3' ? '/v3/' : cleanPath(path);
        if (cleaned !== path) return redirect(req, res, cleaned + url.search);
        gateway(req, res, path);
        return;
      }
    }
    // http.ServeMux redirects a path that is not clean to its clean form.
    const cleaned = cleanPath(url.pathname);
    if (cleaned !== url.pathname) return redirect(req, res, cleaned + url.search);
    switch (url.pathname) {
      case '/health': {
        if (!allowMethod(req, res, 'GET')) return;
        const ok = healthy(etcd, url.searchParams.getAll('exclude'));
        if (ok) etcd.quorumGet();
        metrics.healthChecked(ok);
        if (ok) {
          // etcd writes no Content-Type here; Go sniffs the JSON as text.
          reply(res, 200, { 'Content-Type': 'text/plain; charset=utf-8' }, '{"health":"true"}');
        } else {
          httpError(res, 503, '{"health":"false"}');
        }
        return;
      }
      case '/livez':
      case '/readyz':
        probe(req, res, url, etcd, metrics, url.pathname.slice(1) as 'livez' | 'readyz');
        return;
      case '/version':
        // etcd's metrics URLs serve only /metrics and /health (and etcd 3.5's probes).
        if (!access) break;
        serveVersion(req, res);
        return;
      case '/config/local/log':
        if (!access) break;
        if (!allowMethod(req, res, 'PUT')) return;
        // A body cut short ends the exchange.
        setLogLevel(req, res, etcd).catch(() => res.destroy());
        return;
      case '/metrics':
        metrics.render().then(
          (text) => {
            res.writeHead(200, { 'Content-Type': metrics.contentType });
            res.end(text);
            metrics.scraped(200);
          },
          (err: unknown) => {
            httpError(res, 500, `An error has occurred while serving metrics:\n\n${String(err)}`);
            metrics.scraped(500);
          },
        );
        return;
      default: {
        const [, type, name] = url.pathname.split('/');
        if ((type === 'livez' || type === 'readyz') && PROBE_CHECKS[type].some(([check]) => `/${type}/${check}` === url.pathname)) {
          probe(req, res, url, etcd, metrics, type, name);
          return;
        }
      }
    }
    httpError(res, 404, '404 page not found');
  };
}
