/**
 * Assembles a running server from a ServerConfig: the EtcdServer, one gRPC server with every
 * service, and the peer, client and metrics listeners. Used by the CLI and by embedding apps.
 */
import fs from 'node:fs';
import tls from 'node:tls';
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { GRPC_OVERHEAD_BYTES, isTlsUrl, type ClientTlsConfig, type PeerTlsConfig, type ServerConfig } from '../config.js';
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
import { bindUrl, type BoundListener, type ClientListener } from './listener.js';
import { ServerMetrics } from './metrics.js';
import { logCapabilities, logServerLeading, logServerStarting } from './startup-log.js';
import { crlCheck, loadTls, peerCertificateAllowed } from './tls.js';
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

/** Descriptors etcd keeps for its own files (`reservedInternalFDNum`). */
const RESERVED_INTERNAL_FDS = 150;

/**
 * A start refused by etcd's embed package itself, which logs its own fatal line (package
 * `embed`, zap message `zapMessage` with `fields`) where etcdmain would log the error.
 */
export class EmbedFatalError extends Error {
  override readonly name = 'EmbedFatalError';
  constructor(
    message: string,
    readonly zapMessage: string,
    readonly fields: Record<string, unknown>,
  ) {
    super(message);
  }
}

/**
 * The soft limit on open files (etcd `runtimeutil.FDLimit`, `RLIMIT_NOFILE`'s current value, as
 * Node raised it at start up to the hard limit, as Go does), from /proc/self/limits; undefined
 * when unlimited or unreadable (etcd then skips its check).
 */
function fdLimit(): number | undefined {
  let limits: string;
  try {
    limits = fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
  return soft === undefined ? undefined : Number(soft);
}

/**
 * Starts a server as etcd's `StartEtcd` does: binds the peer URLs, then the client URLs, then
 * opens the data dir, serves, and binds the metrics URLs. Throws when a port cannot be bound
 * (before anything is written to the data dir), or when the data dir is locked.
 */
export async function startEtcd(config: ServerConfig, log: Logger): Promise<RunningServer> {
  /** Every listener bound so far, closed with the server or when starting fails. */
  const listeners: ClientListener[] = [];
  const bind = async (url: string, tlsOptions: tls.TlsOptions | undefined): Promise<BoundListener> => {
    const bound = await bindUrl(url, tlsOptions);
    listeners.push(bound);
    return bound;
  };
  let etcd: EtcdServer | undefined;
  let grpc: GrpcServer | undefined;
  try {
    const peers: BoundListener[] = [];
    const peerTls = config.peerTls;
    // Like etcd, TLS settings are read only when a URL needs them (with http:// URLs alone a
    // certificate that is not there is no error), but auto TLS makes its certificate whatever
    // the URLs (etcd `PeerSelfCert`, `ClientSelfCert`).
    const selfCert = (c: ClientTlsConfig) => c.autoTls && !c.certFile && !c.keyFile;
    // A CRL applies to the certificates of the files given, not to auto TLS's (etcd's
    // `SelfCert` makes new TLS settings, without the CRL).
    const crlOf = (c: ClientTlsConfig | undefined) => (c?.clientCrlFile && !selfCert(c) ? crlCheck(c.clientCrlFile, log) : undefined);
    const peerTlsOptions = peerTls && (config.listenPeerUrls.some(isTlsUrl) || selfCert(peerTls)) ? loadPeerTls(peerTls, config) : undefined;
    for (const url of config.listenPeerUrls) peers.push(await bind(url, peerTlsOptions));
    const clientTls = config.clientTls;
    const secure = [...config.listenClientUrls, ...config.listenMetricsUrls].some(isTlsUrl);
    const tlsOptions = clientTls && (secure || selfCert(clientTls)) ? loadTls(clientTls, config.dataDir, config.listenClientUrls.map((u) => new URL(u).host), 'client') : undefined;
    const clients: BoundListener[] = [];
    const limit = fdLimit();
    // etcd keeps one listener per address (`configureClientListeners`' map): a repeated client
    // URL is served once, where a repeated peer or metrics URL fails to bind.
    for (const url of new Set(config.listenClientUrls)) {
      clients.push(await bind(url, tlsOptions));
      // Once a client URL is bound, etcd checks that 150 descriptors are left for its own files.
      if (limit !== undefined && limit <= RESERVED_INTERNAL_FDS) {
        throw new EmbedFatalError(
          `file descriptor limit[${limit}] of etcd process is too low, and should be set higher than ${RESERVED_INTERNAL_FDS} to ensure internal usage`,
          'file descriptor limit of etcd process is too low; please set higher',
          { limit, 'recommended-limit': RESERVED_INTERNAL_FDS },
        );
      }
    }

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
      const gateway = config.enableGrpcGateway ? gatewayHandler(services, config.maxConcurrentStreams) : undefined;
      return { grpc: services, http: httpHandler(server, serverMetrics, { gateway, access }), upgrade: gateway && upgradeHandler(gatewayWebSocket(gateway)) };
    };
    // etcd serves the gRPC API on its peer URLs too, next to its peer HTTP endpoints.
    const peerHttp = peerHandler(server, advertised);
    const peerCrl = crlOf(peerTls);
    for (const peer of peers) {
      peer.serve({ grpc, http: peerHttp, admit: peerTls && ((socket) => peerCertificateAllowed(peerTls, socket) && (peerCrl?.(socket) ?? true)) });
      log.info({ address: peer.address, ...plog('embed', 'I', `listening for peers on ${peer.address}`) }, 'serving peer traffic');
    }
    logServerLeading(log, config, server);
    if (clientTls && (clientTls.certFile || clientTls.keyFile || clientTls.autoTls)) {
      const text = tlsInfoText(clientTls, config.dataDir, 'client');
      log.info({ 'tls-info': text, 'cipher-suites': clientTls.cipherSuites, ...plog('embed', 'I', `ClientTLS: ${text}`) }, 'starting with client TLS');
    }
    const clientCrl = crlOf(clientTls);
    for (const client of clients) client.serve({ ...clientRoutes(), admit: clientCrl });
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

/**
 * The peer listeners' TLS options (see `loadTls`); throws etcd's error when both
 * `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname` are given.
 */
function loadPeerTls(peerTls: PeerTlsConfig, config: ServerConfig): tls.TlsOptions {
  if (peerTls.allowedCn && peerTls.allowedHostname) {
    throw new Error(`AllowedCN and AllowedHostname are mutually exclusive (cn=${JSON.stringify(peerTls.allowedCn)}, hostname=${JSON.stringify(peerTls.allowedHostname)})`);
  }
  return loadTls(peerTls, config.dataDir, config.listenPeerUrls.map((u) => new URL(u).host), 'peer');
}
