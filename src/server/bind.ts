/**
 * The listeners etcd binds before it opens its data dir (etcd `StartEtcd`'s
 * `configurePeerListeners` and `configureClientListeners`), in a module light enough to load
 * before the rest of the server: the `etcd-ts` command binds them first, so that clients
 * connecting while the server loads wait in the listener (see `ClientListener`) instead of being
 * refused, as etcd's listeners take them ~35 ms after it starts.
 */
import fs from 'node:fs';
import type tls from 'node:tls';
import type { Logger } from 'pino';

import { isTlsUrl, type ClientTlsConfig, type PeerTlsConfig, type ServerConfig } from '../config.js';
import { bindUrl, type BoundListener, type ClientListener } from './listener.js';
import { crlCheck, loadTls, peerCertificateAllowed } from './tls.js';

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

/** The peer and client listeners, bound, with the TLS settings the server goes on with. */
export interface BoundUrls {
  readonly peers: BoundListener[];
  readonly clients: BoundListener[];
  /** The client listeners' TLS options, also for the metrics URLs; undefined without TLS. */
  readonly tlsOptions: tls.TlsOptions | undefined;
  /** Whether a peer connection may stay once its handshake is done: the allowed CN or host name, and the CRL. */
  readonly admitPeer: ((socket: tls.TLSSocket) => boolean) | undefined;
  /** Whether a client connection may stay once its handshake is done: the CRL. */
  readonly admitClient: ((socket: tls.TLSSocket) => boolean) | undefined;
}

/**
 * Whether auto TLS makes a certificate for `c` (etcd `PeerSelfCert`, `ClientSelfCert`): asked for
 * and no files given. It does so whatever the URLs.
 */
const selfCert = (c: ClientTlsConfig): boolean => c.autoTls && !c.certFile && !c.keyFile;

/** Whether `bindUrls` loads the peer URLs' TLS settings: with TLS settings, an https:// peer URL or auto TLS. */
const peerTlsUsed = (config: ServerConfig): boolean =>
  config.peerTls !== undefined && (config.listenPeerUrls.some(isTlsUrl) || selfCert(config.peerTls));

/** Whether `bindUrls` loads the client URLs' TLS settings: with TLS settings, a TLS client or metrics URL or auto TLS. */
const clientTlsUsed = (config: ServerConfig): boolean =>
  config.clientTls !== undefined && ([...config.listenClientUrls, ...config.listenMetricsUrls].some(isTlsUrl) || selfCert(config.clientTls));

/**
 * The CRL file `bindUrls` reads for `c`: a CRL applies to the certificates of the files given,
 * not to auto TLS's (etcd's `SelfCert` makes new TLS settings, without the CRL).
 */
const crlFileOf = (c: ClientTlsConfig | undefined): string | undefined => (c?.clientCrlFile && !selfCert(c) ? c.clientCrlFile : undefined);

/**
 * Whether `bindUrls` touches nothing but sockets for `config`: TCP URLs without TLS, no unix
 * socket file, no certificate or CRL to read, none for auto TLS to write into the data dir. The
 * command then binds them before it sets up its logging and looks at the data dir (etcd binds
 * after both), so that they listen as early as they can (ARCHITECTURE, "Startup"); what etcd
 * does first still happens first for anything it can see.
 */
export function bindsSocketsOnly(config: ServerConfig): boolean {
  const tcp = [...config.listenPeerUrls, ...config.listenClientUrls].every((url) => url.startsWith('http://'));
  return tcp && !peerTlsUsed(config) && !clientTlsUsed(config) && crlFileOf(config.peerTls) === undefined && crlFileOf(config.clientTls) === undefined;
}

/**
 * Binds the peer URLs, then the client URLs, as etcd does; after the first client URL, refuses
 * an open-file limit of 150 or less (EmbedFatalError). Throws what a bind or the TLS settings
 * throw, with every listener it bound closed.
 * @param log logs the refusals of a CRL (`--client-crl-file`, `--peer-crl-file`); not needed
 *   where `bindsSocketsOnly`.
 */
export async function bindUrls(config: ServerConfig, log?: Logger): Promise<BoundUrls> {
  const listeners: ClientListener[] = [];
  const bind = async (url: string, tlsOptions: tls.TlsOptions | undefined): Promise<BoundListener> => {
    const bound = await bindUrl(url, tlsOptions);
    listeners.push(bound);
    return bound;
  };
  try {
    const crlOf = (c: ClientTlsConfig | undefined) => {
      const file = crlFileOf(c);
      if (file === undefined) return undefined;
      if (log === undefined) throw new Error('bindUrls: a CRL needs the logger');
      return crlCheck(file, log);
    };
    const peers: BoundListener[] = [];
    const peerTls = config.peerTls;
    // Like etcd, TLS settings are read only when a URL needs them (with http:// URLs alone a
    // certificate that is not there is no error), but auto TLS makes its certificate whatever
    // the URLs.
    const peerTlsOptions = peerTls && peerTlsUsed(config) ? loadPeerTls(peerTls, config) : undefined;
    for (const url of config.listenPeerUrls) peers.push(await bind(url, peerTlsOptions));
    const clientTls = config.clientTls;
    const tlsOptions = clientTls && clientTlsUsed(config) ? loadTls(clientTls, config.dataDir, config.listenClientUrls.map((u) => new URL(u).host), 'client') : undefined;
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
    const peerCrl = crlOf(peerTls);
    const admitPeer = peerTls && ((socket: tls.TLSSocket) => peerCertificateAllowed(peerTls, socket) && (peerCrl?.(socket) ?? true));
    return { peers, clients, tlsOptions, admitPeer, admitClient: crlOf(clientTls) };
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
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
