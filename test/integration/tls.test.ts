/**
 * TLS on the client URL, as etcd does it: https:// listen URLs with --cert-file/--key-file,
 * client certificates required with --client-cert-auth/--trusted-ca-file, and --auto-tls.
 * Driven by the real etcdctl.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { etcdctl } from '../helpers/etcdctl.js';
import { ETCDCTL_BIN, etcdTsUnavailableReason, freePort } from '../helpers/servers.js';
import { makeCerts } from '../helpers/certs.js';

const BIN = path.resolve('bin/etcd-ts.js');

/** Starts etcd-ts with `flags`; resolves with its endpoint once it logged that it is ready. */
async function startTls(t: TestContext, dir: string, flags: string[]): Promise<string> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [BIN, '--data-dir', path.join(dir, 'data'), '--listen-client-urls', url, '--advertise-client-urls', url, ...flags], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`etcd-ts did not start: ${err}`)), 20_000);
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('ready to serve client requests')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`etcd-ts exited ${code}: ${err}`)));
  });
  return url;
}

const skip = etcdTsUnavailableReason() ?? (fs.existsSync(ETCDCTL_BIN) ? undefined : 'etcdctl missing');

test('https client URL with client certificate authentication', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-tls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeCerts(dir);
  const f = (n: string) => path.join(dir, n);
  const url = await startTls(t, dir, ['--cert-file', f('server.crt'), '--key-file', f('server.key'), '--trusted-ca-file', f('ca.crt'), '--client-cert-auth']);

  const withCert = ['--cacert', f('ca.crt'), '--cert', f('client.crt'), '--key', f('client.key')];
  const put = await etcdctl(url, [...withCert, 'put', 'k', 'v']);
  assert.equal(put.stdout, 'OK\n', put.stderr);
  const get = await etcdctl(url, [...withCert, 'get', 'k']);
  assert.equal(get.stdout, 'k\nv\n');
  const status = await etcdctl(url, [...withCert, 'endpoint', 'status']);
  assert.equal(status.code, 0, status.stderr);

  // Without a client certificate the TLS handshake is refused, so the request fails.
  const noCert = await etcdctl(url, ['--cacert', f('ca.crt'), '--command-timeout', '2s', 'get', 'k'], { timeoutMs: 15_000 });
  assert.notEqual(noCert.code, 0);
  assert.equal(noCert.stdout, '');
});

test('--auto-tls serves TLS with a generated certificate', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-ts-autotls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const url = await startTls(t, dir, ['--auto-tls']);
  const put = await etcdctl(url, ['--insecure-skip-tls-verify', '--insecure-transport=false', 'put', 'a', 'b']);
  assert.equal(put.stdout, 'OK\n', put.stderr);
  // etcdctl needs --insecure-transport=false to use TLS without CA files (same with etcd 3.4);
  // a client that verifies the certificate refuses the self-signed one.
  const strict = await etcdctl(url, ['--insecure-transport=false', '--command-timeout', '2s', 'get', 'a'], { timeoutMs: 15_000 });
  assert.notEqual(strict.code, 0);
});
