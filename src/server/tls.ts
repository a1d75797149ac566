/**
 * TLS for client URLs, as etcd configures it (etcd `transport.TLSInfo`): certificate and key
 * files, a trusted CA for client certificates (`--client-cert-auth` requires them), a CRL,
 * cipher suites by their Go names, and `--auto-tls` with a self-signed certificate.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type tls from 'node:tls';
import type { ClientTlsConfig } from '../config.js';

/** Go cipher suite names (etcd `--cipher-suites`) → OpenSSL names. TLS 1.3 suites are always on. */
const GO_CIPHERS: Record<string, string> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
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
};

/**
 * Node TLS server options for the client listener. With `autoTls` and neither file given, makes
 * a self-signed certificate under `<dataDir>/fixtures/client` (as etcd does) with the `openssl`
 * command. Throws when only one of the files is given (etcd's "KeyFile and CertFile must both be
 * present[key: …, cert: …]"), a file cannot be read, or a cipher suite name is unknown.
 */
export function loadClientTls(c: ClientTlsConfig, dataDir: string): tls.TlsOptions {
  let certFile = c.certFile;
  let keyFile = c.keyFile;
  if (!certFile && !keyFile && c.autoTls) ({ certFile, keyFile } = selfSigned(path.join(dataDir, 'fixtures', 'client')));
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
  if (c.clientCrlFile) opts.crl = fs.readFileSync(c.clientCrlFile);
  if (c.cipherSuites.length > 0) {
    opts.ciphers = c.cipherSuites
      .map((name) => {
        const openssl = GO_CIPHERS[name];
        if (!openssl) throw new Error(`unexpected TLS cipher suite ${JSON.stringify(name)}`);
        return openssl;
      })
      .join(':');
  }
  return opts;
}

function selfSigned(dir: string): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '365',
      '-subj', '/O=etcd', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  }
  return { certFile, keyFile };
}
