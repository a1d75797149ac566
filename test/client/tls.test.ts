// https endpoints: the client verifies the server with a CA and authenticates with a client
// certificate (embedded etcd-ts with --client-cert-auth); without the certificate it cannot connect.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Client, startServer, UnavailableError } from '../../src/index.js';
import { makeCerts } from '../helpers/certs.js';

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
