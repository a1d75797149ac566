// https endpoints: the client verifies the server with a CA and authenticates with a client
// certificate (embedded etcd-ts with --client-cert-auth); without the certificate it cannot connect.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Client, startServer, UnavailableError } from '../../src/index.js';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`. */
function makeCerts(dir: string): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.crt'], dir);
  for (const name of ['server', 'client']) {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
  }
}

test('https with a CA and a client certificate; refused without the certificate', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-client-tls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const file = (name: string): string => path.join(dir, name);
  const server = await startServer({
    listenClientUrls: ['https://127.0.0.1:0'],
    clientTls: {
      certFile: file('server.crt'), keyFile: file('server.key'), trustedCaFile: file('ca.crt'),
      clientCertAuth: true, autoTls: false, cipherSuites: [], clientCrlFile: '',
    },
    client: { tls: { ca: file('ca.crt'), cert: file('client.crt'), key: fs.readFileSync(file('client.key')) } },
  });
  t.after(() => server.close());
  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  await server.client.put('tls', 'yes');
  assert.equal((await server.client.get('tls')).kvs[0]?.value.toString(), 'yes');
  const watcher = server.client.watch('tls');
  await watcher.created;
  await watcher.cancel();

  const anonymous = new Client({ endpoints: [server.url], tls: { ca: fs.readFileSync(file('ca.crt'), 'utf8') }, timeoutMs: 2000 });
  t.after(() => anonymous.close());
  await assert.rejects(anonymous.get('tls'), (err) => err instanceof UnavailableError || (err as Error).name === 'DeadlineExceededError');
});
