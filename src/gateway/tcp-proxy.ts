/**
 * etcd's L4 gateway (`etcd gateway start`, etcd `proxy/tcpproxy`): a TCP proxy that hands each
 * client connection to one of the endpoints, round-robin over those that answer. An endpoint
 * that refuses a connection is deactivated, and tried again every monitor interval
 * (`--retry-delay`) until it accepts one. Bytes are copied both ways untouched, so any etcd
 * client (gRPC, TLS, the gateway's HTTP) works through it.
 */
import net from 'node:net';

/** What the proxy logs: zap's production logger (JSON lines on stderr) in `etcd gateway`; durations in seconds, as zap writes them. */
export interface ProxyLog {
  info(msg: string, fields: Record<string, unknown>): void;
  warn(msg: string, fields: Record<string, unknown>): void;
}

interface Remote {
  /** `host:port` */
  readonly addr: string;
  readonly host: string;
  readonly port: number;
  inactive: boolean;
}

export interface TcpProxyOptions {
  /** The bound listener (etcd `net.Listen` on `--listen-addr`). */
  listener: net.Server;
  /** The etcd endpoints, `host` and `port` each. */
  endpoints: readonly { host: string; port: number }[];
  /** How often deactivated endpoints are tried again, in ms (`--retry-delay`). @default 300000 (5 min; `etcd gateway` passes 1 min) */
  monitorIntervalMs?: number;
  log: ProxyLog;
}

/** etcd `tcpproxy.TCPProxy`. */
export class TcpProxy {
  private readonly remotes: Remote[];
  private pickCount = 0;
  private readonly monitor: NodeJS.Timeout;
  private readonly sockets = new Set<net.Socket>();
  /** How often deactivated endpoints are tried again, in ms. */
  private readonly intervalMs: number;

  /** Starts proxying the listener's connections; logs `ready to proxy client requests` with the endpoints. */
  constructor(private readonly options: TcpProxyOptions) {
    this.remotes = options.endpoints.map(({ host, port }) => ({ addr: `${host}:${port}`, host, port, inactive: false }));
    this.intervalMs = options.monitorIntervalMs || 5 * 60_000;
    options.log.info('ready to proxy client requests', { endpoints: this.remotes.map((r) => r.addr) });
    options.listener.on('connection', (socket) => this.serve(socket));
    this.monitor = setInterval(() => this.reactivate(), this.intervalMs);
  }

  /** Stops accepting, closes every proxied connection and the monitor. */
  close(): Promise<void> {
    clearInterval(this.monitor);
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.options.listener.close(() => resolve()));
  }

  /** The next active endpoint, round-robin (etcd `pick` without SRV weights: every endpoint has priority and weight 0). */
  private pick(): Remote | undefined {
    for (let i = 0; i < this.remotes.length; i++) {
      const picked = this.remotes[this.pickCount++ % this.remotes.length]!;
      if (!picked.inactive) return picked;
    }
    return undefined;
  }

  /** Connects `client` to the first endpoint that accepts, deactivating those that refuse; closes it when none does. */
  private serve(client: net.Socket): void {
    this.track(client);
    client.pause();
    const attempt = (): void => {
      const remote = this.pick();
      if (remote === undefined) {
        client.destroy();
        return;
      }
      const upstream = net.connect({ host: remote.host, port: remote.port });
      upstream.once('error', (err) => {
        remote.inactive = true;
        this.options.log.warn('deactivated endpoint', { address: remote.addr, interval: this.intervalMs / 1000, error: dialError(remote, err) });
        attempt();
      });
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        this.track(upstream);
        for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
          from.pipe(to);
          from.on('error', () => to.destroy());
          from.on('close', () => to.destroy());
        }
        client.resume();
      });
    };
    if (!client.destroyed) attempt();
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  }

  /** Tries each deactivated endpoint once (etcd `runMonitor`): one that accepts is active again. */
  private reactivate(): void {
    for (const remote of this.remotes.filter((r) => r.inactive)) {
      const probe = net.connect({ host: remote.host, port: remote.port });
      probe.once('connect', () => {
        probe.destroy();
        remote.inactive = false;
        this.options.log.info('activated', { address: remote.addr });
      });
      probe.once('error', (err) => {
        this.options.log.warn('failed to activate endpoint (stay inactive for another interval)', { address: remote.addr, interval: this.intervalMs / 1000, error: dialError(remote, err) });
      });
    }
  }
}

/** Go's `net.Dial` error text: `dial tcp 127.0.0.1:1: connect: connection refused`. */
function dialError(remote: Remote, err: NodeJS.ErrnoException): string {
  const reason = err.code === 'ECONNREFUSED' ? 'connect: connection refused' : err.code === 'ENOTFOUND' ? `lookup ${remote.host}: no such host` : err.message;
  const target = err.code === 'ENOTFOUND' ? remote.addr : `${(err as NodeJS.ErrnoException & { address?: string }).address ?? remote.host}:${remote.port}`;
  return `dial tcp ${target}: ${reason}`;
}

