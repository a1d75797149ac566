/** Test certificates made with the `openssl` command. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/**
 * Writes into `dir` a CA (`ca.crt`, `ca.key`), a server certificate and a client certificate
 * (`server.crt`/`server.key`, `client.crt`/`client.key`) valid for 127.0.0.1 and localhost,
 * both signed by the CA and usable for server and client auth. Valid for one day.
 */
export function makeCerts(dir: string): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.crt'], dir);
  for (const name of ['server', 'client']) {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
  }
}

/**
 * Writes into `dir` (after {@link makeCerts}) a CRL of its CA revoking the certificates named
 * (e.g. `['client']`), as `crl.pem` and `crl.der`. It is out of date on purpose: issued on
 * 2020-01-01 with its next update a day later.
 */
export function makeCrl(dir: string, revoked: readonly string[]): void {
  const serial = (name: string): string => execFileSync('openssl', ['x509', '-in', `${name}.crt`, '-noout', '-serial'], { cwd: dir, encoding: 'utf8' }).trim().split('=')[1]!;
  fs.writeFileSync(path.join(dir, 'index.txt'), revoked.map((name) => `R\t301231000000Z\t200101000000Z\t${serial(name)}\tunknown\t/CN=${name}\n`).join(''));
  fs.writeFileSync(path.join(dir, 'ca.cnf'), '[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\ndefault_md=sha256\n');
  openssl(['ca', '-gencrl', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-crl_lastupdate', '200101000000Z', '-crl_nextupdate', '200102000000Z', '-out', 'crl.pem'], dir);
  openssl(['crl', '-in', 'crl.pem', '-outform', 'DER', '-out', 'crl.der'], dir);
}
