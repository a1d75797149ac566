/**
 * The HTTP/1.1 endpoints served next to gRPC on every client and metrics URL, answering as etcd
 * 3.4 does (status codes, bodies and headers measured on the real etcd):
 *
 * - `GET /health`: 200 `{"health":"true"}`, or 503 `{"health":"false"}` + newline while an
 *   alarm is active; `?exclude=NOSPACE` (repeatable) ignores that alarm. etcd also proposes an
 *   empty v2 QGET through raft to prove a quorum; a single member has nothing to prove, so we
 *   do not (and, unlike etcd, a /health call does not add a raft index).
 * - `GET /version`: `{"etcdserver":"…","etcdcluster":"…"}` as application/json.
 * - `/metrics`: the Prometheus text exposition of the server's registry.
 *
 * Other methods on /health and /version get 405 with `Allow: GET`; other paths 404. Every
 * response carries etcd's permissive CORS headers.
 */
import type http from 'node:http';
import { AlarmType } from '../../proto/gen/rpc.gen.js';
import { CLUSTER_VERSION, SERVER_VERSION, type EtcdServer } from '../etcd-server.js';
import type { ServerMetrics } from '../metrics.js';

/** The headers etcd's CORS wrapper adds to every client-URL response. */
const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'POST, GET, OPTIONS, PUT, DELETE',
  'Access-Control-Allow-Headers': 'accept, content-type, authorization',
};

/** Go's `http.Error`: plain text, `nosniff`, the message and a newline. */
function httpError(res: http.ServerResponse, code: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { ...CORS_HEADERS, ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(`${message}\n`);
}

/** etcd `allowMethod`: false (after answering 405) unless the request uses `method`. */
function allowMethod(req: http.IncomingMessage, res: http.ServerResponse, method: string): boolean {
  if (req.method === method) return true;
  httpError(res, 405, 'Method Not Allowed', { Allow: method });
  return false;
}

/** etcd `checkHealth` for one member: unhealthy while an alarm not named in `exclude` is active. */
function healthy(etcd: EtcdServer, exclude: readonly string[]): boolean {
  return etcd.listAlarms().every((a) => exclude.includes(AlarmType[a.alarm]));
}

/** The request handler for etcd's HTTP endpoints of `etcd`, rendering `metrics` on /metrics. */
export function httpHandler(etcd: EtcdServer, metrics: ServerMetrics): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/health': {
        if (!allowMethod(req, res, 'GET')) return;
        const ok = healthy(etcd, url.searchParams.getAll('exclude'));
        metrics.healthChecked(ok);
        if (ok) {
          // etcd writes no Content-Type here; Go sniffs the JSON as text.
          res.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
          res.end('{"health":"true"}');
        } else {
          httpError(res, 503, '{"health":"false"}');
        }
        return;
      }
      case '/version':
        if (!allowMethod(req, res, 'GET')) return;
        res.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ etcdserver: SERVER_VERSION, etcdcluster: CLUSTER_VERSION }));
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
      default:
        httpError(res, 404, '404 page not found');
    }
  };
}
