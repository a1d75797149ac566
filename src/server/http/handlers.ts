/**
 * The HTTP/1.1 endpoints served next to gRPC on every client and metrics URL, as etcd serves
 * them: `/health`, `/version` and `/metrics`.
 */
import type http from 'node:http';
import { CLUSTER_VERSION, SERVER_VERSION, type EtcdServer } from '../etcd-server.js';

/** The request handler for `etcd`'s HTTP endpoints. */
export function httpHandler(etcd: EtcdServer): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/health': {
        const alarms = etcd.listAlarms();
        const healthy = alarms.length === 0;
        res.writeHead(healthy ? 200 : 503, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ health: String(healthy) }));
        return;
      }
      case '/version':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ etcdserver: SERVER_VERSION, etcdcluster: CLUSTER_VERSION }));
        return;
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('404 page not found\n');
    }
  };
}
