// Shared by the client tests: which servers to run against, and small helpers.
import { after, before, type TestContext } from 'node:test';
import { etcdTsUnavailableReason, etcdUnavailableReason, freePort, startServer, type ServerHandle, type ServerKind } from '../helpers/servers.js';

/** The servers every client test runs against, with the reason to skip one (undefined = run). */
export const KINDS: Array<{ kind: ServerKind; skip: string | undefined }> = [
  { kind: 'etcd-ts', skip: etcdTsUnavailableReason() },
  { kind: 'etcd', skip: etcdUnavailableReason() },
];

/** A started server of `kind`, stopped when the test (or suite) ends. */
export function start(t: Pick<TestContext, 'after'>, kind: ServerKind, flags: string[] = []): Promise<ServerHandle> {
  return startServer(t, { kind, flags });
}

/** An http:// URL on which nothing listens. */
export async function deadEndpoint(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

/** Reads a metric's value from the server's /metrics; `absent` when the series is not there (throws without it). */
export async function metric(endpoint: string, name: string, absent?: number): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) {
    if (absent !== undefined) return absent;
    throw new Error(`metric ${name} not found`);
  }
  return Number(line.split(' ')[1]);
}

/**
 * Starts one server of `kind` for the enclosing describe() (a `before` hook) and stops it in
 * that describe's `after` hook; returns a getter for it. (The `after` passed to servers.ts must
 * be the suite's: registered from inside a `before` hook it would run as soon as that hook ends.)
 */
export function suiteServer(kind: ServerKind, flags: string[] = []): () => ServerHandle {
  const cleanups: Array<() => Promise<void> | void> = [];
  let server: ServerHandle | undefined;
  before(async () => {
    server = await startServer({ after: (fn) => cleanups.push(fn) }, { kind, flags });
  });
  after(async () => {
    for (const fn of cleanups) await fn();
  });
  return () => server!;
}
