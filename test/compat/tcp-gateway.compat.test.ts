// `etcd gateway start` (etcd's L4 TCP proxy) against `etcd-ts gateway start`, both in front of
// the same real etcd: the refusals of its command line, etcdctl through it while one endpoint
// refuses connections, and what it logs (zap's JSON, time stamps aside).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { resolve } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { etcdctl } from '../helpers/etcdctl.js';
import { ETCD_BIN, etcdUnavailableReason, freePort, startServer } from '../helpers/servers.js';

const command = (kind: 'etcd' | 'etcd-ts', args: readonly string[]): [string, string[]] =>
  kind === 'etcd' ? [ETCD_BIN, [...args]] : [process.execPath, [resolve('bin/etcd-ts.js'), ...args]];

/**
 * Starts `kind`'s gateway with `args` (killed when the test ends) and waits until it logs that
 * it is ready; `log()` is its stderr so far.
 */
async function startGateway(t: TestContext, kind: 'etcd' | 'etcd-ts', args: readonly string[]): Promise<{ child: ChildProcess; log: () => string }> {
  const [cmd, cmdArgs] = command(kind, args);
  const child: ChildProcess = spawn(cmd, cmdArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  for (let i = 0; i < 400 && !log.includes('ready to proxy client requests'); i++) await sleep(50);
  assert.ok(log.includes('ready to proxy client requests'), `${kind} gateway not ready after 20 s: ${log}`);
  return { child, log: () => log };
}

/** The zap lines of `log`, each once and sorted, without the time stamp and zap's caller, after `edit`. */
function zapMessages(log: string, edit: (line: string) => string = (line) => line): string[] {
  return [...new Set(log.split('\n').filter((l) => l.startsWith('{')).map((l) => {
    const { ts: _ts, caller: _caller, ...rest } = JSON.parse(l) as Record<string, unknown>;
    return edit(JSON.stringify(rest));
  }))].sort();
}

describe('etcd gateway: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('refuses the same command lines with the same words, streams and exit status, and prints the same help', async () => {
    const port = await freePort();
    const cases = [
      ['gateway'],
      ['gateway', 'start', '--help'],
      ['gateway', 'start', '--bogus'],
      ['gateway', 'start', '--retry-delay', '5'],
      ['gateway', 'start', '--endpoints=nope'],
      ['gateway', 'start', '--listen-addr', 'bad'],
      ['gateway', 'start', `--endpoints=127.0.0.1:${port}`, `--listen-addr=127.0.0.1:${port}`],
    ];
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      for (const args of cases) {
        const [cmd, cmdArgs] = command(kind, args);
        const r = spawnSync(cmd, cmdArgs, { encoding: 'utf8', timeout: 10_000 });
        (seen[kind] ??= []).push(`${args.join(' ')}: status ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      }
    }
    assert.match(seen.etcd![2]!, /status 1\nstdout: \nstderr: Error: unknown flag: --bogus\nUsage:/);
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });

  it('proxies etcdctl to the endpoints that accept, deactivating and retrying one that refuses, and logs it as etcd does', { timeout: 60_000 }, async (t) => {
    const upstream = await startServer(t, { kind: 'etcd' });
    const upstreamAddr = new URL(upstream.endpoint).host;
    const dead = `127.0.0.1:${await freePort()}`;
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const listen = `127.0.0.1:${await freePort()}`;
      // Flags before the subcommand, as etcd's own e2e test gives them.
      const gateway = await startGateway(t, kind, ['gateway', `--endpoints=${dead},http://${upstreamAddr}`, '--listen-addr', listen, 'start', '--retry-delay=1s']);
      const steps = [['put', `k-${kind}`, 'v'], ['get', `k-${kind}`, '--print-value-only'], ['endpoint', 'health']];
      const answers: string[] = [];
      for (const step of steps) {
        const r = await etcdctl(`http://${listen}`, step);
        answers.push(`${step[0]}: ${r.code} ${r.stdout.replace(/took = \S+/, 'took = <t>').replace(listen, '<gateway>')}`);
      }
      await sleep(1500); // one retry of the dead endpoint
      gateway.child.kill('SIGKILL');
      seen[kind] = [...answers, ...zapMessages(gateway.log())];
    }
    assert.ok(seen.etcd!.some((l) => l.includes('"msg":"deactivated endpoint"')), seen.etcd!.join('\n'));
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });

  it('activates a deactivated endpoint again once it accepts connections, at the next retry, and proxies to it', { timeout: 60_000 }, async (t) => {
    const seen: Record<string, string[]> = {};
    for (const kind of ['etcd', 'etcd-ts'] as const) {
      const port = await freePort();
      const listen = `127.0.0.1:${await freePort()}`;
      const gateway = await startGateway(t, kind, ['gateway', 'start', `--endpoints=127.0.0.1:${port}`, `--listen-addr=${listen}`, '--retry-delay=1s']);
      const exchange = (): Promise<string> =>
        new Promise((resolve) => {
          const socket = net.connect(Number(listen.split(':')[1]), '127.0.0.1', () => socket.write('ping'));
          let got = '';
          socket.on('data', (c: Buffer) => (got += c.toString()));
          socket.on('close', () => resolve(got === '' ? 'closed' : got));
          socket.on('error', () => undefined);
        });
      const before = await exchange(); // the endpoint refuses: deactivated
      // The endpoint comes up: an echo server answering one message, then closing.
      const endpoint = net.createServer((s) => s.once('data', (d: Buffer) => s.end(`echo ${d.toString()}`)));
      await new Promise<void>((resolve) => endpoint.listen(port, '127.0.0.1', resolve));
      t.after(() => endpoint.close());
      for (let i = 0; i < 60 && !gateway.log().includes('"msg":"activated"'); i++) await sleep(50);
      const after = await exchange();
      gateway.child.kill('SIGKILL');
      endpoint.close();
      const messages = zapMessages(gateway.log(), (line) => line.replaceAll(String(port), '<port>'));
      seen[kind] = [`before: ${before}`, `after: ${after}`, ...messages];
    }
    assert.ok(seen.etcd!.includes('after: echo ping') && seen.etcd!.some((l) => l.includes('"msg":"activated"')), seen.etcd!.join('\n'));
    assert.deepEqual(seen['etcd-ts'], seen.etcd);
  });
});
