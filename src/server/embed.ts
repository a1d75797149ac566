/**
 * Assembles a running server from a ServerConfig: the EtcdServer, one gRPC server with every
 * service, and the peer, client and metrics listeners. Used by the CLI and by embedding apps.
 */
import type tls from 'node:tls';
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { GRPC_OVERHEAD_BYTES, isTlsUrl, type ServerConfig } from '../config.js';
import { plog } from '../logger.js';
import { WatchService } from '../proto/gen/rpc.gen.js';
import { startAutoCompactor } from './auto-compactor.js';
import { EtcdServer } from './etcd-server.js';
import { addClusterService } from './grpc/cluster-service.js';
import { addElectionService } from './grpc/election-service.js';
import { addHealthService } from './grpc/health-service.js';
import { addKVService } from './grpc/kv-service.js';
import { addAuthService } from './grpc/auth-service.js';
import { addLeaseService } from './grpc/lease-service.js';
import { addLockService } from './grpc/lock-service.js';
import { checkRequests } from './grpc/malformed.js';
import { addMaintenanceService } from './grpc/maintenance-service.js';
import { addWatchService } from './grpc/watch-service.js';
import type { GatewayHandler } from './http/gateway.js';
import { httpHandler, upgradeHandler, type WebSocketHandler } from './http/handlers.js';
import { bindUrls, type BoundUrls } from './bind.js';
import { bindUrl, type BoundListener, type ClientListener } from './listener.js';
import { ServerMetrics } from './metrics.js';
import { logCapabilities, logServerLeading, logServerStarting } from './startup-log.js';
import { goHandshakeError, logRejected } from './tls.js';
import { peerHandler } from './http/peer.js';
import { tlsInfoText } from '../cli/flags.js';
import { GrpcServer, type GrpcServerOptions, type ServiceImplementation } from './transport/grpc-server.js';

/** A running server. */
export interface RunningServer {
  readonly etcd: EtcdServer;
  /** Client URLs with the ports actually bound, in --listen-client-urls order. */
  readonly clientUrls: string[];
  /** Metrics URLs with the ports actually bound. */
  readonly metricsUrls: string[];
  /** Stops listening, closes client connections, waits for durable state, frees the data dir. */
  close(): Promise<void>;
}

/** Our gRPC server whose services count their calls and message bytes in `metrics` (see ServerMetrics.instrument, countBytes). */
class InstrumentedGrpcServer extends GrpcServer {
  private readonly metrics: ServerMetrics;

  constructor(metrics: ServerMetrics, options: GrpcServerOptions) {
    super(options);
    this.metrics = metrics;
  }

  override addService(service: ServiceDefinition, implementation: ServiceImplementation): void {
    // Requests etcd could not unmarshal are answered before the metrics' handlers see them, as
    // in etcd, whose interceptors run after the request is decoded; their bytes are counted.
    super.addService(this.metrics.countBytes(checkRequests(service)), this.metrics.instrument(service, implementation as UntypedServiceImplementation));
  }
}

/**
 * The gateway of one client listener (`gatewayHandler` and `gatewayWebSocket`), loaded on its
 * first request: its module, @bufbuild/protobuf, ws and the routes it builds from the descriptor
 * set were ~70 ms of a start's CPU, before any client is served (ARCHITECTURE, "Startup").
 * Requests that arrive while it loads wait for it, in their order.
 */
function lazyGateway(grpc: GrpcServer, maxStreams: number): { http: GatewayHandler; webSocket: WebSocketHandler } {
  let loaded: { http: GatewayHandler; webSocket: WebSocketHandler } | undefined;
  let loading: Promise<NonNullable<typeof loaded>> | undefined;
  const load = () =>
    (loading ??= import('./http/gateway.js').then(({ gatewayHandler, gatewayWebSocket }) => {
      const http = gatewayHandler(grpc, maxStreams);
      return (loaded = { http, webSocket: gatewayWebSocket(http) });
    }));
  return {
    http: (req, res, path) => (loaded ? loaded.http(req, res, path) : void load().then((g) => g.http(req, res, path))),
    webSocket: (req, socket, head, path) => (loaded ? loaded.webSocket(req, socket, head, path) : void load().then((g) => g.webSocket(req, socket, head, path))),
  };
}

/**
 * Starts a server as etcd's `StartEtcd` does: binds the peer URLs, then the client URLs (unless
 * `bound` has them: see `bindUrls`), then opens the data dir, serves, and binds the metrics
 * URLs. Throws when a port cannot be bound (before anything is written to the data dir), or
 * when the data dir is locked; the listeners are closed then, `bound`'s too.
 */
export async function startEtcd(config: ServerConfig, log: Logger, bound?: BoundUrls): Promise<RunningServer> {
  let etcd: EtcdServer | undefined;
  let grpc: GrpcServer | undefined;
  /** Every listener bound so far, closed with the server or when starting fails. */
  const listeners: ClientListener[] = [];
  try {
    const { peers, clients, tlsOptions, admitPeer, admitClient } = bound ?? (await bindUrls(config, log));
    listeners.push(...peers, ...clients);
    const bind = async (url: string, options: tls.TlsOptions | undefined): Promise<BoundListener> => {
      const listener = await bindUrl(url, options);
      listeners.push(listener);
      return listener;
    };

    const server = (etcd = await EtcdServer.open(config, log));
    logServerStarting(log, config, server);
    const serverMetrics = new ServerMetrics(server);
    grpc = new InstrumentedGrpcServer(serverMetrics, {
      maxReceiveMessageLength: config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
      maxConcurrentStreams: config.maxConcurrentStreams,
      pingMinTimeMs: config.grpcKeepaliveMinTimeMs,
      keepalive: { intervalMs: config.grpcKeepaliveIntervalMs, timeoutMs: config.grpcKeepaliveTimeoutMs },
    });
    const advertised = config.advertiseClientUrls;
    addKVService(grpc, server);
    addMaintenanceService(grpc, server);
    addWatchService(grpc, server, serverMetrics.sender(WatchService.watch));
    addLeaseService(grpc, server);
    addLockService(grpc, server);
    addElectionService(grpc, server);
    addClusterService(grpc, server, advertised);
    addAuthService(grpc, server);
    addHealthService(grpc);
    const access = { corsOrigins: config.corsOrigins, hostWhitelist: config.hostWhitelist, clientCertAuth: config.clientTls?.clientCertAuth === true };
    const services = grpc;
    // A gateway per client listener: etcd's is a gRPC client of its own listener, whose stream
    // limit it shares (see gatewayHandler).
    const clientRoutes = () => {
      const gateway = config.enableGrpcGateway ? lazyGateway(services, config.maxConcurrentStreams) : undefined;
      return { grpc: services, http: httpHandler(server, serverMetrics, { gateway: gateway?.http, access }), upgrade: gateway && upgradeHandler(gateway.webSocket) };
    };
    // etcd serves the gRPC API on its peer URLs too, next to its peer HTTP endpoints.
    const peerHttp = peerHandler(server, advertised);
    const handshakeFailed = (socket: tls.TLSSocket, err: Error, remoteAddr: string): void => logRejected(log, socket, goHandshakeError(err), remoteAddr);
    for (const peer of peers) {
      peer.serve({ grpc, http: peerHttp, admit: admitPeer, handshakeFailed });
      log.info({ address: peer.address, ...plog('embed', 'I', `listening for peers on ${peer.address}`) }, 'serving peer traffic');
    }
    logServerLeading(log, config, server);
    const clientTls = config.clientTls;
    if (clientTls && (clientTls.certFile || clientTls.keyFile || clientTls.autoTls)) {
      const text = tlsInfoText(clientTls, config.dataDir, 'client');
      log.info({ 'tls-info': text, 'cipher-suites': clientTls.cipherSuites, ...plog('embed', 'I', `ClientTLS: ${text}`) }, 'starting with client TLS');
    }
    for (const client of clients) client.serve({ ...clientRoutes(), admit: admitClient, handshakeFailed });
    const metrics: ClientListener[] = [];
    const metricsHandler = httpHandler(server, serverMetrics);
    for (const url of config.listenMetricsUrls) {
      const bound = await bind(url, tlsOptions);
      bound.serve({ grpc, http: metricsHandler });
      metrics.push(bound);
    }
    const clientUrls = clients.map((l) => l.boundUrl);
    const compactor = startAutoCompactor(config.autoCompactionMode, config.autoCompactionRetention, {
      rev: () => server.store.headRev,
      compact: (rev) => server.compact({ revision: BigInt(rev), physical: false }),
    }, log);
    const ready = plog('embed', 'I', 'ready to serve client requests');
    log.info({ 'client-urls': clientUrls, 'data-dir': config.dataDir, 'member-id': server.memberId.toString(16), ...ready }, 'ready to serve client requests');
    logCapabilities(log, server);
    for (const { url, address } of clients) {
      if (isTlsUrl(url)) {
        log.info({ address, ...plog('embed', 'I', `serving client requests on ${address}`) }, 'serving client traffic securely');
      } else {
        const line = plog('embed', 'N', `serving insecure client requests on ${address}, this is strongly discouraged!`);
        log.info({ address, ...line }, 'serving client traffic insecurely; this is strongly discouraged!');
      }
    }
    const running = grpc;
    return {
      etcd: server,
      clientUrls,
      metricsUrls: metrics.map((l) => l.boundUrl),
      close: async () => {
        compactor?.stop();
        running.close();
        await Promise.all(listeners.map((l) => l.close()));
        await server.close();
      },
    };
  } catch (err) {
    grpc?.close();
    await Promise.all(listeners.map((l) => l.close()));
    await etcd?.close();
    throw err;
  }
}

