// JWT auth tokens (`--auth-token jwt,…`) against a real etcd 3.4 with the same key: the same
// steps through the gRPC gateway (which shows the tokens) on both servers, compared answer by
// answer, and the tokens themselves compared claim by claim. A token says which auth revision
// it was made at, so after any change of users or roles it is refused as "revision of auth
// store is old" until the client authenticates again; it survives a restart and expires after
// the `ttl` option; once auth is disabled, reads made with it are refused as old. Both servers
// sign with one key, so each accepts the other's tokens: the check that our tokens are etcd's,
// bit for bit but the expiry second.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { hideMemberIds } from '../helpers/etcdctl.js';
import { etcdUnavailableReason, startServer, type ServerHandle } from '../helpers/servers.js';

/** The JWT lifetime both servers are given. */
const TTL_S = 4;

/** POSTs `body` to the gateway's `path`, with `token` in Authorization; the status and the body with the member's IDs normalised. */
async function call(server: ServerHandle, path: string, body: unknown, token?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(new URL(path, server.endpoint), { method: 'POST', body: JSON.stringify(body), headers: token ? { Authorization: token } : {} });
  return { status: res.status, body: hideMemberIds(await res.text()) };
}

/** A token's header and claims. */
function decode(token: string): { header: unknown; claims: Record<string, unknown> } {
  const [header, claims] = token.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part!, 'base64url').toString()) as Record<string, unknown>);
  return { header, claims: claims! };
}

async function authenticate(server: ServerHandle, name: string, password: string): Promise<string> {
  const res = await call(server, '/v3/auth/authenticate', { name, password });
  assert.equal(res.status, 200, res.body);
  return (JSON.parse(res.body) as { token: string }).token;
}

describe('JWT auth tokens: etcd 3.4 vs etcd-ts', { skip: etcdUnavailableReason() }, () => {
  it('same claims, refused when the auth revision moved, kept across a restart, expired after ttl, and interchangeable', { timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'jwt-compat-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'jwt.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    writeFileSync(join(dir, 'jwt.pub'), publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const flags = ['--auth-token', `jwt,pub-key=${join(dir, 'jwt.pub')},priv-key=${join(dir, 'jwt.key')},sign-method=RS256,ttl=${TTL_S}s`, '--bcrypt-cost', '4'];
    const servers = await Promise.all([startServer(t, { kind: 'etcd', flags }), startServer(t, { kind: 'etcd-ts', flags })]);

    const run = async (server: ServerHandle) => {
      const seen: unknown[] = [];
      for (const [path, body] of [
        ['/v3/auth/user/add', { name: 'root', password: 'rootpw' }],
        ['/v3/auth/user/grant', { user: 'root', role: 'root' }],
        ['/v3/auth/enable', {}],
      ] as const) seen.push(await call(server, path, body));
      const first = await authenticate(server, 'root', 'rootpw');
      const { header, claims } = decode(first);
      const expiresIn = (claims.exp as number) - Date.now() / 1000;
      seen.push({ header, claimNames: Object.keys(claims), username: claims.username, revision: claims.revision, ttlOk: expiresIn > TTL_S - 2 && expiresIn <= TTL_S });
      seen.push(await call(server, '/v3/kv/put', { key: 'YQ==', value: 'MQ==' }, first));
      // A change of users moves the auth revision: the first token is now old.
      seen.push(await call(server, '/v3/auth/user/add', { name: 'u2', password: 'p' }, first));
      seen.push(await call(server, '/v3/kv/put', { key: 'YQ==', value: 'Mg==' }, first));
      seen.push(await call(server, '/v3/kv/range', { key: 'YQ==' }, first));
      seen.push(await call(server, '/v3/auth/user/list', {}, first));
      const second = await authenticate(server, 'root', 'rootpw');
      seen.push(decode(second).claims.revision);
      seen.push(await call(server, '/v3/kv/put', { key: 'YQ==', value: 'Mw==' }, second));
      // A JWT needs no server state: it outlives a restart.
      await server.restart();
      seen.push(await call(server, '/v3/kv/range', { key: 'YQ==' }, second));
      await sleep(Math.max(0, (decode(second).claims.exp as number) * 1000 + 1100 - Date.now()));
      seen.push(await call(server, '/v3/kv/range', { key: 'YQ==' }, second));
      return seen;
    };
    const etcd = await run(servers[0]!);
    const ours = await run(servers[1]!);
    assert.deepEqual(ours, etcd);

    // Same key, same auth revision: each server takes the other's fresh token.
    const fromEtcd = await authenticate(servers[0]!, 'root', 'rootpw');
    const fromOurs = await authenticate(servers[1]!, 'root', 'rootpw');
    assert.deepEqual(decode(fromOurs).header, decode(fromEtcd).header);
    assert.equal((await call(servers[1]!, '/v3/kv/range', { key: 'YQ==' }, fromEtcd)).status, 200);
    assert.equal((await call(servers[0]!, '/v3/kv/range', { key: 'YQ==' }, fromOurs)).status, 200);

    // Auth off: a JWT still parses, and a read made with one from before (etcd `doSerialize`)
    // is refused as old, the auth revision having moved; writes pass.
    const disabled = async (server: ServerHandle) => {
      const token = await authenticate(server, 'root', 'rootpw');
      return [
        await call(server, '/v3/auth/disable', {}, token),
        await call(server, '/v3/kv/range', { key: 'YQ==' }, token),
        await call(server, '/v3/kv/range', { key: 'YQ==', serializable: true }, token),
        await call(server, '/v3/kv/txn', { success: [{ request_range: { key: 'YQ==' } }] }, token),
        await call(server, '/v3/kv/put', { key: 'YQ==', value: 'NA==' }, token),
        await call(server, '/v3/kv/range', { key: 'YQ==' }),
      ];
    };
    const etcdDisabled = await disabled(servers[0]!);
    assert.ok(etcdDisabled[1]!.body.includes('revision of auth store is old'), etcdDisabled[1]!.body);
    assert.deepEqual(await disabled(servers[1]!), etcdDisabled);
  });
});
