/**
 * Auth tokens (etcd `auth.TokenProvider`, `simple_token.go`, `jwt.go`, `options.go`), chosen by
 * `--auth-token`:
 *
 * - `simple` (the default): `<16 random letters>.<raft index>`, kept in memory. A token dies
 *   with the process, when auth is disabled, when its user is deleted or changes password, and
 *   after `--auth-token-ttl` seconds without use. It always carries the store's current auth
 *   revision.
 * - `jwt,sign-method=RS256,priv-key=<file>[,pub-key=<file>][,ttl=5m]`: a JSON Web Token with
 *   the claims `{"exp","revision","username"}` signed by the key (RS*, PS*, ES* with PEM keys,
 *   HS* with the key file's bytes as the secret). It survives restarts and needs no state; it
 *   carries the auth revision it was made at, so any later change of users, roles or
 *   permissions makes it "old" (etcd: "revision of auth store is old") and clients
 *   authenticate again. With only `pub-key` the server checks tokens and cannot make them.
 *
 * Signing and checking are jsonwebtoken's (synchronous, node:crypto keys).
 */
import { createPrivateKey, createPublicKey, randomInt, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Who sends a request (etcd `AuthInfo`): the token's user ('' without one) and the auth revision it speaks for (0 without one). */
export interface AuthInfo {
  username: string;
  revision: number;
}

/** How tokens are made and read (etcd `TokenProvider`). */
export interface TokenProvider {
  /** The user and revision of `token`, or undefined for a token this server does not accept; `revision` is the store's current one. */
  info(token: string, revision: number): AuthInfo | undefined;
  /**
   * A new token for `username` at auth revision `revision`; `index` is the raft index of the
   * Authenticate request. `simplePrefix`: the random part of a simple token when it is given
   * (etcd's log holds it in each Authenticate entry), else a new one; JWTs ignore it. Throws
   * etcd's "token signing attempted with verify-only key".
   */
  assign(username: string, revision: number, index: bigint, simplePrefix?: string): string;
  /** Auth was turned off: tokens given so far stop working (simple tokens only). */
  disable(): void;
  /** `username` was deleted or changed password (simple tokens only). */
  invalidateUser(username: string): void;
  /** Stops timers. */
  close(): void;
}

/** A `--auth-token` value etcd refuses at start; `message` is etcd's error text. */
export class TokenOptionsError extends Error {}

const INVALID_OPTIONS = 'auth: invalid auth options';

/** The signing methods of golang-jwt that etcd 3.4 accepts (`jwt.GetSigningMethod`). */
const METHODS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;

/**
 * A JWT signing method etcd accepts (`sign-method=`). Our own type, not jsonwebtoken's
 * `Algorithm`, so that the package's public types (ServerConfig) need no @types/jsonwebtoken.
 */
export type JwtMethod = (typeof METHODS)[number];

/** etcd `DefaultTTL` of JWT tokens. */
const DEFAULT_JWT_TTL_MS = 5 * 60 * 1000;

/** A parsed `--auth-token`: simple tokens, or JWT with its method, keys and lifetime. */
export type TokenOptions =
  | { type: 'simple' }
  | { type: 'jwt'; method: JwtMethod; signKey: KeyObject | Buffer | undefined; verifyKey: KeyObject | Buffer; ttlMs: number };

/**
 * Parses `--auth-token` as etcd's `NewTokenProvider` does (`<type>[,<key>=<value>…]`), reading
 * the JWT key files with `read`. `parseDuration` reads the `ttl` option (Go durations, ms).
 * @throws TokenOptionsError with etcd's text: "auth: invalid auth options" (unknown type,
 *   malformed or repeated option, unknown sign method, unreadable key file, bad ttl), "auth:
 *   missing key data", "auth: public and private keys don't match", or the key parser's error.
 */
export function parseTokenOptions(spec: string, parseDuration: (text: string) => number | undefined, read: (path: string) => Buffer = readFileSync): TokenOptions {
  const [type, ...pairs] = spec.split(',');
  const opts = new Map<string, string>();
  for (const pair of pairs) {
    const kv = pair.split('=');
    if (kv.length !== 2 || opts.has(kv[0]!)) throw new TokenOptionsError(INVALID_OPTIONS);
    opts.set(kv[0]!, kv[1]!);
  }
  if (type === 'simple') return { type: 'simple' };
  if (type !== 'jwt') throw new TokenOptionsError(INVALID_OPTIONS, { cause: new Error(`unknown token type: ${type}`) });

  let ttlMs = DEFAULT_JWT_TTL_MS;
  const ttl = opts.get('ttl') ?? '';
  if (ttl !== '') {
    const parsed = parseDuration(ttl);
    if (parsed === undefined) throw new TokenOptionsError(INVALID_OPTIONS);
    ttlMs = parsed;
  }
  const file = (name: string): Buffer | undefined => {
    const path = opts.get(name) ?? '';
    if (path === '') return undefined;
    try {
      return read(path);
    } catch {
      throw new TokenOptionsError(INVALID_OPTIONS);
    }
  };
  const pub = file('pub-key');
  const priv = file('priv-key');
  const method = opts.get('sign-method') ?? '';
  // golang-jwt knows these too, and etcd then finds no key type for them.
  if (method === 'EdDSA') throw new TokenOptionsError('unsupported signing method: *jwt.SigningMethodEd25519');
  if (method === 'none') throw new TokenOptionsError('unsupported signing method: *jwt.signingMethodNone');
  if (!(METHODS as readonly string[]).includes(method)) throw new TokenOptionsError(INVALID_OPTIONS);
  const alg = method as JwtMethod;

  if (alg.startsWith('HS')) {
    if (!priv || priv.length === 0) throw new TokenOptionsError('auth: missing key data');
    return { type: 'jwt', method: alg, signKey: priv, verifyKey: priv, ttlMs };
  }
  const keyType = alg.startsWith('ES') ? 'ec' : 'rsa';
  const what = keyType === 'ec' ? 'ECDSA' : 'RSA';
  /** golang-jwt's `Parse…KeyFromPEM`, with its error texts (an x509 parse error in a generic wording). */
  const parse = (pem: Buffer | undefined, kind: 'private' | 'public'): KeyObject | undefined => {
    if (!pem || pem.length === 0) return undefined;
    if (!pem.includes('-----BEGIN')) throw new TokenOptionsError('invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key');
    let key: KeyObject;
    try {
      key = kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
    } catch {
      throw new TokenOptionsError(`x509: failed to parse ${kind} key`);
    }
    if (key.asymmetricKeyType !== keyType) throw new TokenOptionsError(`key is not a valid ${what} ${kind} key`);
    return key;
  };
  const privateKey = parse(priv, 'private');
  const publicKey = parse(pub, 'public');
  if (!privateKey && !publicKey) throw new TokenOptionsError('auth: missing key data');
  if (privateKey && publicKey) {
    const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    if (!derived.equals(publicKey.export({ type: 'spki', format: 'der' }))) throw new TokenOptionsError("auth: public and private keys don't match");
  }
  return { type: 'jwt', method: alg, signKey: privateKey, verifyKey: privateKey ? createPublicKey(privateKey) : publicKey!, ttlMs };
}

/** The provider `options` describe; simple tokens live `simpleTtlMs` without use. */
export function newTokenProvider(options: TokenOptions, simpleTtlMs: number): TokenProvider {
  return options.type === 'simple' ? new SimpleTokens(simpleTtlMs) : new JwtTokens(options);
}

const TOKEN_LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const TOKEN_PREFIX_LENGTH = 16;
/** etcd `simpleTokenTTLResolution`: how often expired tokens are dropped. */
const TOKEN_SWEEP_MS = 1000;

/** etcd's simple tokens (`simple_token.go`). */
class SimpleTokens implements TokenProvider {
  private readonly ttlMs: number;
  /** Token → its user and the time (ms) it expires unless used. */
  private readonly tokens = new Map<string, { username: string; expiresAt: number }>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }

  info(token: string, revision: number): AuthInfo | undefined {
    const t = this.tokens.get(token);
    if (!t || t.expiresAt < Date.now()) return undefined;
    t.expiresAt = Date.now() + this.ttlMs;
    return { username: t.username, revision };
  }

  assign(username: string, _revision: number, index: bigint, simplePrefix?: string): string {
    let prefix = simplePrefix ?? '';
    if (simplePrefix === undefined) {
      for (let i = 0; i < TOKEN_PREFIX_LENGTH; i++) prefix += TOKEN_LETTERS[randomInt(TOKEN_LETTERS.length)];
    }
    const token = `${prefix}.${index}`;
    this.tokens.set(token, { username, expiresAt: Date.now() + this.ttlMs });
    this.sweeper ??= setInterval(() => {
      const now = Date.now();
      for (const [tk, t] of this.tokens) if (t.expiresAt < now) this.tokens.delete(tk);
      if (this.tokens.size === 0) this.close();
    }, TOKEN_SWEEP_MS).unref();
    return token;
  }

  disable(): void {
    this.tokens.clear();
    this.close();
  }

  invalidateUser(username: string): void {
    for (const [token, t] of this.tokens) if (t.username === username) this.tokens.delete(token);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}

/** etcd's JWT tokens (`jwt.go`). */
class JwtTokens implements TokenProvider {
  private readonly options: Extract<TokenOptions, { type: 'jwt' }>;

  constructor(options: Extract<TokenOptions, { type: 'jwt' }>) {
    this.options = options;
  }

  info(token: string): AuthInfo | undefined {
    let claims: unknown;
    try {
      claims = jsonwebtoken().verify(token, this.options.verifyKey, { algorithms: [this.options.method] });
    } catch {
      return undefined;
    }
    const { username, revision } = (claims ?? {}) as { username?: unknown; revision?: unknown };
    if (typeof username !== 'string' || typeof revision !== 'number') return undefined;
    return { username, revision };
  }

  assign(username: string, revision: number): string {
    const key = this.options.signKey;
    if (key === undefined) throw new Error('auth: token signing attempted with verify-only key');
    // Go's encoding/json writes the claims map with its keys sorted.
    const exp = Math.floor((Date.now() + this.options.ttlMs) / 1000);
    return jsonwebtoken().sign({ exp, revision, username }, key, { algorithm: this.options.method, noTimestamp: true, allowInsecureKeySizes: true });
  }

  disable(): void {}

  invalidateUser(): void {}

  close(): void {}
}

/** jsonwebtoken, loaded on first use: the command binds its listeners before it loads what it needs later. */
function jsonwebtoken(): typeof import('jsonwebtoken') {
  return createRequire(import.meta.url)('jsonwebtoken') as typeof import('jsonwebtoken');
}
