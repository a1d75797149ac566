// A TCP proxy in front of a server, so that a test can cut a client off (or move it to another
// endpoint of the same data) while the server keeps running.
import { createServer, connect, type Socket } from 'node:net';

export interface Proxy {
  /** http://127.0.0.1:<port> of the proxy. */
  readonly url: string;
  /** Drops every open connection and resets new ones until resume(). */
  pause(): void;
  /**
   * Accepts new connections without ever answering (their data is dropped, like a stopped
   * server's backlog) until resume(); they stay silent after it. Open connections are kept.
   */
  stall(): void;
  /** Accepts and forwards connections again. */
  resume(): void;
  /** Drops every open connection (new ones are accepted). */
  dropConnections(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free port forwarding to `target` (host:port or http://host:port). */
export async function startProxy(target: string): Promise<Proxy> {
  const { hostname, port } = new URL(target.includes('://') ? target : `http://${target}`);
  const sockets = new Set<Socket>();
  let paused = false;
  let stalled = false;
  const server = createServer((inbound) => {
    if (paused) {
      inbound.resetAndDestroy();
      return;
    }
    if (stalled) {
      sockets.add(inbound);
      inbound.on('close', () => sockets.delete(inbound));
      inbound.on('error', () => inbound.destroy());
      inbound.resume();
      return;
    }
    const outbound = connect(Number(port), hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { inbound.destroy(); outbound.destroy(); });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy did not bind');
  const dropConnections = (): void => {
    for (const s of sockets) s.resetAndDestroy();
  };
  return {
    url: `http://127.0.0.1:${address.port}`,
    pause: () => { paused = true; dropConnections(); },
    stall: () => { stalled = true; },
    resume: () => { paused = false; stalled = false; },
    dropConnections,
    close: () => new Promise((resolve) => {
      dropConnections();
      server.close(() => resolve());
    }),
  };
}
