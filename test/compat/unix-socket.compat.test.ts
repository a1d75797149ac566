// Client URLs on unix sockets (`--listen-client-urls unix://localhost:<n>`) against a real
// etcd 3.4: the socket is the file `localhost:<n>` in the server's working directory, and gRPC
// (etcdctl), /health and the gRPC gateway all answer on it; the file is gone after a clean
// stop. Each server runs in a directory of its own, and so does each etcdctl.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { hideMemberIds } from '../helpers/etcdctl.js';
import { ETCD_BIN, ETCDCTL_BIN, etcdUnavailableReason, freePort } from '../helpers/servers.js';

const ETCD_TS_BIN = join(import.meta.dirname, '..', '..', 'bin', 'etcd-ts.js');

/** etcdctl run in `cwd` (where the socket file is) against `endpoint`; stdout, or the last stderr line on failure. */
function ctl(cwd: string, endpoint: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(ETCDCTL_BIN, [`--endpoints=${endpoint}`, ...args], { cwd, env: { ...process.env, ETCDCTL_API: '3' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve(code === 0 ? out : `exit ${code}: ${err.trim().split('\n').at(-1) ?? ''}`));
  });
}

/** An HTTP request over the unix socket `socketPath`: status and body. */
function request(socketPath: string, method: string, path: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${text}`));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('unix socket client URLs: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('serve gRPC, /health and the gateway on the socket file, and remove it on stop', { timeout: 60_000 }, async (t) => {
    const results: string[][] = [];
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const dir = await mkdtemp(join(tmpdir(), `unix-${kind}-`));
      const port = await freePort();
      const url = `unix://localhost:${port}`;
      const args = ['--data-dir', join(dir, 'data'), '--listen-client-urls', url, '--advertise-client-urls', url, '--listen-peer-urls', `http://127.0.0.1:${await freePort()}`];
      const child: ChildProcess = kind === 'etcd' ? spawn(ETCD_BIN, args, { cwd: dir, stdio: 'ignore' }) : spawn(process.execPath, [ETCD_TS_BIN, ...args], { cwd: dir, stdio: 'ignore' });
      t.after(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await once(child, 'exit');
        }
        await rm(dir, { recursive: true, force: true });
      });
      const socket = join(dir, `localhost:${port}`);
      for (let i = 0; i < 200 && (await ctl(dir, url, ['endpoint', 'status'])).startsWith('exit'); i++) await sleep(100);
      results.push([
        await ctl(dir, url, ['put', 'a', '1']),
        await ctl(dir, url, ['get', 'a', '-w', 'json']),
        await ctl(dir, url, ['member', 'list', '-w', 'json']).then((s) => s.replace(/"ID":\d+/, '"ID":<id>').replace(`unix://localhost:${port}`, 'unix://localhost:<port>')),
        await request(socket, 'GET', '/health'),
        hideMemberIds(await request(socket, 'POST', '/v3/kv/range', '{"key":"YQ=="}')),
      ]);
      child.kill('SIGTERM');
      await once(child, 'exit');
      results.at(-1)!.push(`socket file left: ${existsSync(socket)}`);
    }
    assert.match(results[0]![1]!, /"value":"MQ=="/, 'etcd 3.4 served the put');
    assert.deepEqual(results[1], results[0]);
  });
});
