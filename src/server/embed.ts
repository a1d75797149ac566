/**
 * Assembles a running server from a ServerConfig: the EtcdServer, one gRPC server with every
 * service, and the client and metrics listeners. Used by the CLI and by embedding apps.
 */
import tls from 'node:tls';
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
import { gatewayHandler, gatewayWebSocket } from './http/gateway.js';
import { httpHandler, upgradeHandler } from './http/handlers.js';
import { listenClientUrl, type ClientListener } from './listener.js';
import { ServerMetrics } from './metrics.js';
import { loadClientTls } from './tls.js';
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

/** Starts a server; throws when the data dir is locked or a port cannot be bound. */
export async function startEtcd(config: ServerConfig, log: Logger): Promise<RunningServer> {
  const etcd = await EtcdServer.open(config, log);
  const listeners: ClientListener[] = [];
  const serverMetrics = new ServerMetrics(etcd);
  const grpc = new InstrumentedGrpcServer(serverMetrics, {
    maxReceiveMessageLength: config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    maxConcurrentStreams: config.maxConcurrentStreams,
    pingMinTimeMs: config.grpcKeepaliveMinTimeMs,
    keepalive: { intervalMs: config.grpcKeepaliveIntervalMs, timeoutMs: config.grpcKeepaliveTimeoutMs },
  });
  try {
    const advertised = config.advertiseClientUrls;
    addKVService(grpc, etcd);
    addMaintenanceService(grpc, etcd);
    addWatchService(grpc, etcd, serverMetrics.sender(WatchService.watch));
    addLeaseService(grpc, etcd);
    addLockService(grpc, etcd);
    addElectionService(grpc, etcd);
    addClusterService(grpc, etcd, advertised);
    addAuthService(grpc, etcd);
    addHealthService(grpc);
    // Like etcd, TLS settings are read only when a URL needs them: with http:// URLs alone a
    // certificate that is not there is no error.
    const secure = [...config.listenClientUrls, ...config.listenMetricsUrls].some(isTlsUrl);
    const tlsOptions: tls.TlsOptions | undefined = config.clientTls && secure ? loadClientTls(config.clientTls, config.dataDir, config.listenClientUrls.map((u) => new URL(u).host)) : undefined;
    const gateway = config.enableGrpcGateway ? gatewayHandler(grpc) : undefined;
    const access = { corsOrigins: config.corsOrigins, hostWhitelist: config.hostWhitelist, clientCertAuth: config.clientTls?.clientCertAuth === true };
    const handler = httpHandler(etcd, serverMetrics, { gateway, access });
    const upgrades = gateway && upgradeHandler(gatewayWebSocket(gateway));
    for (const url of config.listenClientUrls) listeners.push(await listenClientUrl(url, grpc, handler, tlsOptions, upgrades));
    const metrics: ClientListener[] = [];
    const metricsHandler = httpHandler(etcd, serverMetrics);
    for (const url of config.listenMetricsUrls) metrics.push(await listenClientUrl(url, grpc, metricsHandler, tlsOptions));
    listeners.push(...metrics);
    const clientUrls = listeners.slice(0, config.listenClientUrls.length).map((l) => l.boundUrl);
    const compactor = startAutoCompactor(config.autoCompactionMode, config.autoCompactionRetention, {
      rev: () => etcd.store.headRev,
      compact: (rev) => etcd.compact({ revision: BigInt(rev), physical: false }),
    }, log);
    const ready = plog('embed', 'I', 'ready to serve client requests');
    log.info({ 'client-urls': clientUrls, 'data-dir': config.dataDir, 'member-id': etcd.memberId.toString(16), ...ready }, 'ready to serve client requests');
    for (const { url, address } of listeners.slice(0, config.listenClientUrls.length)) {
      if (isTlsUrl(url)) {
        log.info({ address, ...plog('embed', 'I', `serving client requests on ${address}`) }, 'serving client traffic securely');
      } else {
        const line = plog('embed', 'N', `serving insecure client requests on ${address}, this is strongly discouraged!`);
        log.info({ address, ...line }, 'serving client traffic insecurely; this is strongly discouraged!');
      }
    }
    return {
      etcd,
      clientUrls,
      metricsUrls: metrics.map((l) => l.boundUrl),
      close: async () => {
        compactor?.stop();
        grpc.close();
        await Promise.all(listeners.map((l) => l.close()));
        await etcd.close();
      },
    };
  } catch (err) {
    grpc.close();
    await Promise.all(listeners.map((l) => l.close()));
    await etcd.close();
    throw err;
  }
}
