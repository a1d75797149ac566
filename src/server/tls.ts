/**
 * TLS for client and peer URLs, as etcd configures it (etcd `transport.TLSInfo`): certificate
 * and key files, a trusted CA for client certificates (`--client-cert-auth` requires them), a
 * CRL, cipher suites by their Go names, `--auto-tls` with a self-signed certificate, and the
 * peer listeners' checks of a client certificate's CN or host name.
 */
import { execFileSync } from 'node:child_process';
import { constants } from 'node:crypto';
import fs from 'node:fs';
import { isIP, type Socket } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { ClientTlsConfig, PeerTlsConfig } from '../config.js';
import { splitHostPort } from '../cli/flags.js';
import { goPathError, goQuotedList } from '../go-format.js';
import { plog } from '../logger.js';

/**
 * Go's cipher suite names (etcd `--cipher-suites` takes every name of Go's `tls.CipherSuites()`
 * and `tls.InsecureCipherSuites()`, and two short ChaCha20 names) → OpenSSL's. Go ignores the
 * list for TLS 1.3, whose three suites are always on: their names are accepted and mean nothing
 * here ('' below). RC4 suites are accepted and never negotiated (OpenSSL 3 has none).
 */
const GO_CIPHERS: Record<string, string> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: 'ECDHE-ECDSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: 'ECDHE-RSA-AES128-SHA256',
  TLS_RSA_WITH_AES_128_CBC_SHA256: 'AES128-SHA256',
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: 'ECDHE-RSA-DES-CBC3-SHA',
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: 'DES-CBC3-SHA',
  TLS_RSA_WITH_RC4_128_SHA: '',
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: '',
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: '',
  TLS_AES_128_GCM_SHA256: '',
  TLS_AES_256_GCM_SHA384: '',
  TLS_CHACHA20_POLY1305_SHA256: '',
};

/**
 * Go's order of preference among the TLS 1.2 suites (`cipherSuitesPreferenceOrder`): Go picks
 * by it, whatever the order of `--cipher-suites`, but for ChaCha20 first when the client puts
 * it first (OpenSSL's `SSL_OP_PRIORITIZE_CHACHA` does the same). The first 16 are Go's default
 * list.
 */
const GO_PREFERENCE = [
  'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA', 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA',
  'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA', 'TLS_RSA_WITH_AES_128_GCM_SHA256', 'TLS_RSA_WITH_AES_256_GCM_SHA384',
  'TLS_RSA_WITH_AES_128_CBC_SHA', 'TLS_RSA_WITH_AES_256_CBC_SHA', 'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA', 'TLS_RSA_WITH_3DES_EDE_CBC_SHA',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256', 'TLS_RSA_WITH_AES_128_CBC_SHA256',
];
const GO_DEFAULT_COUNT = 16;

/** Go's TLS 1.3 suites in its order of preference (OpenSSL's puts AES-256 first). */
const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384';

/**
 * Go's HTTP/2 server (`http2.ConfigureServer`, which etcd's TLS listener calls) refuses a list
 * without one of these; etcd then cannot serve.
 */
const HTTP2_REQUIRED = ['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'];

/**
 * Node TLS server options for the client listeners (`kind` 'client') or the peer listeners
 * ('peer'). With `autoTls` and neither file given, makes a self-signed certificate for `hosts`
 * (the listen URLs' `host:port`s) under `<dataDir>/fixtures/<kind>` with the `openssl` command,
 * as etcd's `SelfCert` makes it, and, as etcd replaces all of its TLS settings by that
 * certificate, asks clients for none (`clientCertAuth`, `trustedCaFile` and `clientCrlFile` no
 * longer apply). Throws when only one of the files is given (etcd's "KeyFile and CertFile must
 * both be present[key: …, cert: …]"), a file cannot be read, or a cipher suite name is unknown.
 */
export function loadTls(config: ClientTlsConfig, dataDir: string, hosts: readonly string[], kind: 'client' | 'peer'): tls.TlsOptions {
  let c = config;
  let { certFile, keyFile } = c;
  if (!certFile && !keyFile && c.autoTls) {
    ({ certFile, keyFile } = selfSigned(path.join(dataDir, 'fixtures', kind), hosts));
    c = { ...c, clientCertAuth: false, trustedCaFile: '', clientCrlFile: '' };
  }
  if (!certFile || !keyFile) throw new Error(`KeyFile and CertFile must both be present[key: ${keyFile}, cert: ${certFile}]`);
  const opts: tls.TlsOptions = {
    cert: fs.readFileSync(certFile),
    key: fs.readFileSync(keyFile),
    minVersion: 'TLSv1.2',
  };
  if (c.trustedCaFile) opts.ca = fs.readFileSync(c.trustedCaFile);
  // etcd requires client certificates whenever a trusted CA is given (etcd `TLSInfo.ServerConfig`).
  if (c.clientCertAuth || c.trustedCaFile) {
    opts.requestCert = true;
    opts.rejectUnauthorized = true;
  }
  for (const name of c.cipherSuites) if (GO_CIPHERS[name] === undefined) throw new Error(`unexpected TLS cipher suite ${JSON.stringify(name)}`);
  if (c.cipherSuites.length > 0 && !c.cipherSuites.some((name) => HTTP2_REQUIRED.includes(name))) {
    throw new Error(`http2: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher (need at least one of ${HTTP2_REQUIRED.join(' or ')})`);
  }
  const chosen = new Set(c.cipherSuites.map((name) => GO_CIPHERS[name]));
  const suites = GO_PREFERENCE.map((name) => GO_CIPHERS[name]!).filter((openssl, i) => (c.cipherSuites.length > 0 ? chosen.has(openssl) : i < GO_DEFAULT_COUNT));
  opts.ciphers = [TLS13_SUITES, ...suites].join(':');
  opts.honorCipherOrder = true;
  opts.secureOptions = constants.SSL_OP_PRIORITIZE_CHACHA;
  return opts;
}

/**
 * etcd `transport.SelfCert`: an ECDSA P-521 certificate for server authentication, valid one
 * year, organisation `etcd`, naming each of `hosts` (`host:port`) by IP or DNS name; kept in
 * `dir` and reused when both files are there.
 */
function selfSigned(dir: string, hosts: readonly string[]): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const names = hosts
      .map((host) => splitHostPort(host)?.host ?? '')
      .filter((h) => h !== '')
      .map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`));
    // A configuration of our own: openssl's default one would make a CA certificate.
    const config = path.join(dir, 'openssl.cnf');
    fs.writeFileSync(config, '[req]\ndistinguished_name=dn\n[dn]\n');
    try {
      execFileSync('openssl', ['req', '-x509', '-config', config, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp521r1', '-nodes', '-days', '365',
        '-subj', '/O=etcd', '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
        '-addext', 'extendedKeyUsage=serverAuth', ...(names.length > 0 ? ['-addext', `subjectAltName=${names.join(',')}`] : []),
        '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
    } finally {
      fs.rmSync(config, { force: true });
    }
  }
  return { certFile, keyFile };
}

/**
 * etcd `TLSInfo.AllowedCN` / `AllowedHostname` (`--peer-cert-allowed-cn`,
 * `--peer-cert-allowed-hostname`): whether a connection's verified client certificate has the
 * CN, or is valid for the host name, asked for; true when neither is asked for. Like Go's
 * `VerifyPeerCertificate` there, a connection without a verified certificate fails either check.
 */
export function peerCertificateAllowed(config: PeerTlsConfig, socket: tls.TLSSocket): boolean {
  if (!config.allowedCn && !config.allowedHostname) return true;
  const cert = socket.authorized ? socket.getPeerCertificate() : undefined;
  if (!cert?.subject) return false;
  if (config.allowedCn && cert.subject.CN !== config.allowedCn) return false;
  return !config.allowedHostname || tls.checkServerIdentity(config.allowedHostname, cert) === undefined;
}

/**
 * etcd `checkCRL` (`pkg/transport/listener_tls.go`, for `--client-crl-file` and
 * `--peer-crl-file`): once a connection's handshake is done, the certificates its client
 * presented are refused when the CRL lists one of their serial numbers. As in etcd the file
 * (PEM or DER) is read again for every connection, and only the serial numbers count: neither
 * the CRL's dates nor its signature are checked (OpenSSL's own CRL check, Node's `crl` option,
 * refuses every certificate once a CRL's next update has passed, and takes PEM only).
 * @returns undefined when the connection may go on (or presented no certificate), else etcd's
 *   reason: `transport: certificate serial <hex> revoked`, or why the file could not be read.
 */
export function crlRefusal(crlFile: string, socket: tls.TLSSocket): string | undefined {
  const presented = presentedSerials(socket);
  if (presented.length === 0) return undefined;
  let revoked: Set<string>;
  try {
    revoked = revokedSerials(fs.readFileSync(crlFile));
  } catch (err) {
    return (err as NodeJS.ErrnoException).syscall !== undefined ? goPathError(err as NodeJS.ErrnoException) : (err as Error).message;
  }
  const serial = presented.find((s) => revoked.has(s));
  return serial === undefined ? undefined : `transport: certificate serial ${serial} revoked`;
}

/** A serial number as Go's `big.Int.Bytes()` in `%x`: lower-case hex without leading zeros. */
const serialHex = (hex: string): string => hex.toLowerCase().replace(/^(00)+/, '');

/** The serial numbers of the certificate chain a client presented, leaf first (none without a certificate). */
function presentedSerials(socket: tls.TLSSocket): string[] {
  const serials: string[] = [];
  const seen = new Set<tls.DetailedPeerCertificate>();
  for (let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true); c?.serialNumber && !seen.has(c); c = c.issuerCertificate) {
    seen.add(c);
    serials.push(serialHex(c.serialNumber.length % 2 === 1 ? `0${c.serialNumber}` : c.serialNumber));
  }
  return serials;
}

/** The revoked serial numbers of a CRL, PEM (`X509 CRL`) or DER, as Go's `x509.ParseCRL` takes it. @throws Error when it is neither. */
function revokedSerials(file: Buffer): Set<string> {
  const pem = /-----BEGIN X509 CRL-----([^-]*)-----END X509 CRL-----/.exec(file.toString('latin1'));
  const der = pem ? Buffer.from(pem[1]!.replace(/\s+/g, ''), 'base64') : file;
  // Loaded on first use: the command binds its listeners before it loads what it needs later.
  const require = createRequire(import.meta.url);
  const { AsnConvert } = require('@peculiar/asn1-schema') as typeof import('@peculiar/asn1-schema');
  const { CertificateList } = require('@peculiar/asn1-x509') as typeof import('@peculiar/asn1-x509');
  let list: InstanceType<typeof CertificateList>;
  try {
    list = AsnConvert.parse(der, CertificateList);
  } catch (err) {
    throw new Error(`x509: malformed crl (${(err as Error).message})`, { cause: err });
  }
  return new Set((list.tbsCertList.revokedCertificates ?? []).map((r) => serialHex(Buffer.from(r.userCertificate).toString('hex'))));
}

/**
 * A listener's check of each TLS connection against a CRL file ({@link crlRefusal}): refused
 * connections are logged as etcd logs them ({@link logRejected}) and the listener closes them.
 */
export function crlCheck(crlFile: string, log: Logger): (socket: tls.TLSSocket) => boolean {
  return (socket) => {
    const error = crlRefusal(crlFile, socket);
    if (error === undefined) return true;
    logRejected(log, socket, error);
    return false;
  };
}

/**
 * etcd's `logTLSHandshakeFailure`: a connection refused during or right after its TLS handshake,
 * `rejected connection from "addr" (error "…", ServerName "…"[, IPAddresses […], DNSNames […]])`
 * (the certificate's names when the client presented one; zap: warn `rejected connection`).
 * `remoteAddr` defaults to the socket's, which a closed socket no longer has.
 */
export function logRejected(log: Logger, socket: tls.TLSSocket, error: string, remoteAddr = goAddress(socket)): void {
  const serverName = typeof socket.servername === 'string' ? socket.servername : '';
  const cert = socket.getPeerCertificate();
  const head = `rejected connection from ${JSON.stringify(remoteAddr)} (error ${JSON.stringify(error)}, ServerName ${JSON.stringify(serverName)}`;
  const fields = { 'remote-addr': remoteAddr, 'server-name': serverName };
  if (cert?.raw === undefined) {
    log.warn({ ...fields, error, ...plog('embed', 'I', `${head})`) }, 'rejected connection');
    return;
  }
  const sans = (cert.subjectaltname ?? '').split(', ');
  const named = (prefix: string): string[] => sans.filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length));
  const [ips, dns] = [named('IP Address:'), named('DNS:')];
  const text = `${head}, IPAddresses ${goQuotedList(ips)}, DNSNames ${goQuotedList(dns)})`;
  log.warn({ ...fields, 'ip-addresses': ips, 'dns-names': dns, error, ...plog('embed', 'I', text) }, 'rejected connection');
}

/** A socket's remote address as Go's `net.Addr.String()`: `127.0.0.1:5000`, `[::1]:5000`. */
export function goAddress(socket: Socket): string {
  const host = socket.remoteAddress ?? '';
  return `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? 0}`;
}

/** TLS alerts a client sends, by OpenSSL's error code suffix, as Go's `alert.String()` names them. */
const GO_ALERTS: Record<string, string> = {
  UNKNOWN_CA: 'unknown certificate authority',
  BAD_CERTIFICATE: 'bad certificate',
  CERTIFICATE_UNKNOWN: 'unknown certificate',
  CERTIFICATE_EXPIRED: 'expired certificate',
  CERTIFICATE_REVOKED: 'revoked certificate',
  HANDSHAKE_FAILURE: 'handshake failure',
  PROTOCOL_VERSION: 'protocol version not supported',
  DECRYPT_ERROR: 'error decrypting message',
  ACCESS_DENIED: 'access denied',
  INTERNAL_ERROR: 'internal error',
};

/**
 * A failed TLS handshake's error (Node's `tlsClientError`) in the words of Go's `crypto/tls`,
 * which etcd logs: a client without a certificate where one is required, a first record that
 * is not TLS (plain HTTP), an alert the client sent, a connection closed mid-handshake (`EOF`);
 * else OpenSSL's reason.
 */
export function goHandshakeError(err: Error & { code?: string; reason?: string }): string {
  const code = err.code ?? '';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return "tls: client didn't provide a certificate";
  if (code === 'ERR_SSL_HTTP_REQUEST' || code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return 'tls: first record does not look like a TLS handshake';
  }
  const alert = /^ERR_SSL_(?:TLSV1|SSLV3)_ALERT_(\w+)$/.exec(code)?.[1];
  if (alert !== undefined) return `remote error: tls: ${GO_ALERTS[alert] ?? alert.toLowerCase().replaceAll('_', ' ')}`;
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'EOF';
  return err.reason ?? err.message;
}
