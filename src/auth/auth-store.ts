/**
 * Users, roles and key permissions (etcd `auth.authStore`, `auth/store.go` and
 * `range_perm_cache.go`); tokens are a TokenProvider's (`token-provider.ts`).
 *
 * State lives in three backend buckets named as etcd's: `auth` (the enabled flag and the auth
 * revision), `authUsers` (name → authpb.User) and `authRoles` (name → authpb.Role), and in memory, where each user's
 * permissions are merged into sorted, disjoint key intervals (etcd's range permission cache).
 * Writes are queued in the backend; the caller makes them durable (EtcdServer waits for the
 * store's sync before answering).
 *
 * Every method runs synchronously on the one JS thread, so a check and the request it guards
 * see the same state. A request is refused as "revision of auth store is old" only when its
 * token speaks for an older auth revision than the store's, which JWT tokens made before a
 * change of users, roles or permissions do.
 */
import bcrypt from 'bcrypt';
import type { Backend } from '../mvcc/backend.js';
import { Permission_Type, Role, User, type Permission } from '../proto/gen/auth.gen.js';
import type {
  AuthRoleAddRequest,
  AuthRoleDeleteRequest,
  AuthRoleGrantPermissionRequest,
  AuthRoleRevokePermissionRequest,
  AuthUserAddRequest,
  AuthUserChangePasswordRequest,
  AuthUserDeleteRequest,
  AuthUserGrantRoleRequest,
  AuthUserRevokeRoleRequest,
  RequestOp,
  TxnRequest,
} from '../proto/gen/rpc.gen.js';
import { Errors } from '../server/errors.js';
import { newTokenProvider, type AuthInfo, type TokenOptions, type TokenProvider } from './token-provider.js';

export type { AuthInfo } from './token-provider.js';

/** A request's metadata, as grpc-js and etcd-ts's transport offer it. */
export interface TokenMetadata {
  get(key: string): unknown[];
  /** The common name of the client's verified TLS certificate (etcd-ts's transport sets it). */
  readonly peerCommonName?: string | undefined;
}

/** Options of `AuthStore`. */
export interface AuthStoreOptions {
  /** bcrypt cost of stored passwords (etcd `--bcrypt-cost`). @default 10 */
  bcryptCost?: number;
  /** Seconds an unused simple token lives (etcd `--auth-token-ttl`). @default 300 */
  tokenTtlSec?: number;
  /** The token kind and its settings (etcd `--auth-token`, see `parseTokenOptions`). @default simple tokens */
  tokens?: TokenOptions;
}

const ROOT = 'root';
const ENABLED_KEY = Buffer.from('authEnabled');
const REVISION_KEY = Buffer.from('authRevision');
const ENABLED = Buffer.from([1]);
const DISABLED = Buffer.from([0]);
/** Metadata keys that carry the token (etcd `TokenFieldNameGRPC`, `TokenFieldNameSwagger`). */
const TOKEN_FIELDS = ['token', 'authorization'] as const;

/** A half-open key interval [begin, end); `end` undefined = no upper bound. */
interface KeyInterval {
  begin: Buffer;
  end: Buffer | undefined;
}

/** One user's merged permissions (etcd `unifiedRangePermissions`). */
interface UserPerms {
  read: KeyInterval[];
  write: KeyInterval[];
}

type PermKind = 'read' | 'write';

/** `a < b` with undefined as +∞. */
function endBefore(a: Buffer | undefined, b: Buffer | undefined): boolean {
  if (a === undefined) return false;
  return b === undefined || Buffer.compare(a, b) < 0;
}

/**
 * The interval a permission grants (etcd `getMergedPerms`): no range end is the key alone,
 * a range end of "\0" is every key from `key` on.
 */
function permInterval(p: Permission): KeyInterval {
  if (p.rangeEnd.length === 0) return { begin: p.key, end: Buffer.concat([p.key, Buffer.from([0])]) };
  if (p.rangeEnd.length === 1 && p.rangeEnd[0] === 0) return { begin: p.key, end: undefined };
  return { begin: p.key, end: p.rangeEnd };
}

/** Sorts intervals and merges those that overlap or touch; empty ones are dropped. */
function merge(ivs: KeyInterval[]): KeyInterval[] {
  const sorted = ivs.filter((iv) => endBefore(iv.begin, iv.end)).sort((a, b) => Buffer.compare(a.begin, b.begin));
  const out: KeyInterval[] = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && !endBefore(last.end, iv.begin)) {
      if (endBefore(last.end, iv.end)) last.end = iv.end;
    } else {
      out.push({ ...iv });
    }
  }
  return out;
}

/** The merged interval holding `key`, if any (binary search over disjoint sorted intervals). */
function holding(ivs: readonly KeyInterval[], key: Buffer): KeyInterval | undefined {
  let lo = 0;
  let hi = ivs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const iv = ivs[mid]!;
    if (Buffer.compare(key, iv.begin) < 0) hi = mid - 1;
    else if (endBefore(key, iv.end)) return iv;
    else lo = mid + 1;
  }
  return undefined;
}

/**
 * True when `ivs` grant every key of the request's range (etcd `checkKeyPoint` /
 * `checkKeyInterval`): an empty range end asks for the key alone, "\0" for every key from
 * `key` on. A range with end ≤ key, which holds no key, meets in etcd's interval tree only the
 * permissions that hold `key`, and is granted when one does.
 */
function covers(ivs: readonly KeyInterval[], key: Buffer, rangeEnd: Buffer): boolean {
  const iv = holding(ivs, key);
  if (!iv) return false;
  if (rangeEnd.length === 0) return true;
  const end = rangeEnd.length === 1 && rangeEnd[0] === 0 ? undefined : rangeEnd;
  return !endBefore(iv.end, end);
}

/**
 * The auth store of one server (etcd `authStore`): reads its buckets at construction, changes
 * them through the backend's write queue, and answers permission checks from memory. Errors are
 * etcd's (`src/server/errors.ts`), thrown as documented per method.
 */
export class AuthStore {
  private readonly backend: Backend;
  private readonly bcryptCost: number;
  private readonly tokens: TokenProvider;
  private enabledFlag: boolean;
  private revisionValue: number;
  /** Users and roles by name, as stored. */
  private readonly users = new Map<string, User>();
  private readonly roles = new Map<string, Role>();
  /** Each user's merged permissions (etcd `rangePermCache`); rebuilt after every change. */
  private perms = new Map<string, UserPerms>();

  constructor(backend: Backend, options: AuthStoreOptions = {}) {
    this.backend = backend;
    this.bcryptCost = options.bcryptCost ?? 10;
    this.tokens = newTokenProvider(options.tokens ?? { type: 'simple' }, (options.tokenTtlSec || 300) * 1000);
    for (const { key, value } of backend.range('authUsers')) this.users.set(key.toString(), User.decode(value));
    for (const { key, value } of backend.range('authRoles')) this.roles.set(key.toString(), Role.decode(value));
    this.enabledFlag = backend.get('auth', ENABLED_KEY)?.equals(ENABLED) ?? false;
    this.revisionValue = Number(backend.get('auth', REVISION_KEY)?.readBigUInt64BE(0) ?? 0n);
    // A new store starts at revision 1 (etcd `NewAuthStore`).
    if (this.revisionValue === 0) this.commitRevision();
    this.refreshPerms();
  }

  /** Whether authentication is on (etcd `IsAuthEnabled`). */
  get enabled(): boolean {
    return this.enabledFlag;
  }

  /**
   * The auth revision (etcd `authStore.Revision`, `etcd_debugging_auth_revision`): 1 for a new
   * store, one more at every change of users, roles or permissions and at each disable.
   */
  get revision(): number {
    return this.revisionValue;
  }

  /** After a change of users, roles or permissions: the next revision, and the merged permissions again. */
  private changed(): void {
    this.commitRevision();
    this.refreshPerms();
  }

  /** etcd `commitRevision`: the next revision, queued in the backend with the change. */
  private commitRevision(): void {
    this.revisionValue++;
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(this.revisionValue));
    this.backend.put('auth', REVISION_KEY, b);
  }

  /** Stops the token provider's timers (the store itself needs no closing). */
  close(): void {
    this.tokens.close();
  }

  // --- tokens -----------------------------------------------------------------------------

  /**
   * Who sends a request with this metadata (etcd `AuthInfoFromCtx`, then `AuthInfoFromTLS`):
   * the token's user; without a token, the common name of the client's verified certificate
   * (unless the request came through etcd's gRPC gateway), at the current auth revision; else
   * `{ username: '', revision: 0 }`. Throws "invalid auth token" for a token the provider does
   * not accept (not given here, expired, badly signed), also while auth is disabled.
   */
  authInfo(md: TokenMetadata | undefined): AuthInfo {
    let token: unknown;
    for (const field of TOKEN_FIELDS) {
      token = md?.get(field)[0];
      if (token !== undefined) break;
    }
    if (token === undefined) {
      const cn = md?.peerCommonName;
      const user = cn !== undefined && md?.get('grpcgateway-accept').length === 0 ? cn : '';
      return { username: user, revision: user === '' ? 0 : this.revisionValue };
    }
    const ai = this.tokens.info(String(token), this.revisionValue);
    if (!ai) throw Errors.invalidAuthToken();
    return ai;
  }

  /**
   * Checks a password (etcd `CheckPassword`), off the main thread. Throws "authentication is
   * not enabled", "authentication failed" for an unknown user or a wrong password, and etcd's
   * Unknown-coded "password was given for no password user" for a user added with no password.
   */
  async checkPassword(name: string, password: string): Promise<void> {
    if (!this.enabledFlag) throw Errors.authNotEnabled();
    const user = this.users.get(name);
    if (!user) throw Errors.authFailed();
    if (user.options?.noPassword) throw Errors.noPasswordUser();
    if (!(await bcrypt.compare(password, user.password.toString()))) throw Errors.authFailed();
  }

  /**
   * Gives `name` a new token (etcd `Authenticate`): a simple token `<16 random letters>.<index>`
   * where `index` is the raft index of the request (`simplePrefix` replaces the letters when
   * etcd's log is replayed), or a JWT. Throws "authentication is not enabled", "authentication
   * failed" when the user is gone or has no password, and etcd's Unknown-coded "token signing
   * attempted with verify-only key" for JWT with only a public key.
   */
  authenticate(name: string, index: bigint, simplePrefix?: string): string {
    if (!this.enabledFlag) throw Errors.authNotEnabled();
    const user = this.users.get(name);
    if (!user || user.options?.noPassword) throw Errors.authFailed();
    try {
      return this.tokens.assign(name, this.revisionValue, index, simplePrefix);
    } catch (err) {
      throw Errors.unknown((err as Error).message);
    }
  }

  // --- enable / disable -------------------------------------------------------------------

  /**
   * Turns authentication on (etcd `AuthEnable`); a no-op when it is on. Throws "root user does
   * not exist" or "root user does not have root role".
   */
  enable(): void {
    if (this.enabledFlag) return;
    const root = this.users.get(ROOT);
    if (!root) throw Errors.rootUserNotExist();
    if (!root.roles.includes(ROOT)) throw Errors.rootRoleNotExist();
    this.backend.put('auth', ENABLED_KEY, ENABLED);
    this.enabledFlag = true;
  }

  /** Turns authentication off and forgets every token (etcd `AuthDisable`). */
  disable(): void {
    if (!this.enabledFlag) return;
    this.backend.put('auth', ENABLED_KEY, DISABLED);
    this.commitRevision();
    this.enabledFlag = false;
    this.tokens.disable();
  }

  // --- users ------------------------------------------------------------------------------

  /** bcrypt hash of `password` at the store's cost, computed on libuv's pool. */
  async hashPassword(password: string): Promise<Buffer> {
    return Buffer.from(await bcrypt.hash(password, this.bcryptCost));
  }

  /** `hashPassword` on this thread, blocking it: only for a server that does not serve yet. */
  hashPasswordSync(password: string): Buffer {
    return Buffer.from(bcrypt.hashSync(password, this.bcryptCost));
  }

  /**
   * Adds a user (etcd `UserAdd`); `hashed` from `hashPassword`, or undefined for a user with
   * `noPassword`. Throws "user name is empty", "user name already exists".
   */
  userAdd(name: string, hashed: Buffer | undefined, noPassword: boolean): void {
    if (name === '') throw Errors.userEmpty();
    if (this.users.has(name)) throw Errors.userAlreadyExist();
    this.putUser({ name: Buffer.from(name), password: hashed ?? Buffer.alloc(0), roles: [], options: { noPassword } });
    this.changed();
  }

  /** Deletes a user and its tokens (etcd `UserDelete`). Throws "invalid auth management" for root while enabled, "user name not found". */
  userDelete(name: string): void {
    if (this.enabledFlag && name === ROOT) throw Errors.invalidAuthMgmt();
    if (!this.users.has(name)) throw Errors.userNotFound();
    this.users.delete(name);
    this.backend.remove('authUsers', Buffer.from(name));
    this.changed();
    this.tokens.invalidateUser(name);
  }

  /** Replaces a user's password and drops its tokens (etcd `UserChangePassword`). Throws "user name not found". */
  userChangePassword(name: string, hashed: Buffer): void {
    const user = this.getUser(name);
    this.putUser({ ...user, password: hashed });
    this.changed();
    this.tokens.invalidateUser(name);
  }

  /**
   * Grants a role (etcd `UserGrantRole`); granting one the user has is a no-op. Throws "user
   * name not found", "role name not found" (the root role needs not exist).
   */
  userGrantRole(name: string, role: string): void {
    const user = this.getUser(name);
    if (role !== ROOT && !this.roles.has(role)) throw Errors.roleNotFound();
    if (user.roles.includes(role)) return;
    this.putUser({ ...user, roles: [...user.roles, role].sort(byUtf8) });
    this.changed();
  }

  /** The user's roles, sorted (etcd `UserGet`). Throws "user name not found". */
  userGet(name: string): string[] {
    return [...this.getUser(name).roles];
  }

  /** Every user name, in byte order (etcd `UserList`). */
  userList(): string[] {
    return sortedNames(this.users);
  }

  /**
   * Revokes a role (etcd `UserRevokeRole`). Throws "invalid auth management" for root's root
   * role while enabled, "user name not found", "role is not granted to the user".
   */
  userRevokeRole(name: string, role: string): void {
    if (this.enabledFlag && name === ROOT && role === ROOT) throw Errors.invalidAuthMgmt();
    const user = this.getUser(name);
    if (!user.roles.includes(role)) throw Errors.roleNotGranted();
    this.putUser({ ...user, roles: user.roles.filter((r) => r !== role) });
    this.changed();
  }

  /** True when `name` exists and has `role` (etcd `HasRole`). */
  hasRole(name: string, role: string): boolean {
    return this.users.get(name)?.roles.includes(role) ?? false;
  }

  private getUser(name: string): User {
    const user = this.users.get(name);
    if (!user) throw Errors.userNotFound();
    return user;
  }

  private putUser(user: User): void {
    const name = user.name.toString();
    this.users.set(name, user);
    this.backend.put('authUsers', user.name, Buffer.from(User.encode(user).finish()));
  }

  // --- roles ------------------------------------------------------------------------------

  /** Adds a role with no permissions (etcd `RoleAdd`). Throws "role name is empty", "role name already exists". */
  roleAdd(name: string): void {
    if (name === '') throw Errors.roleEmpty();
    if (this.roles.has(name)) throw Errors.roleAlreadyExist();
    this.putRole({ name: Buffer.from(name), keyPermission: [] });
    this.changed();
  }

  /** The role's permissions, sorted by key (etcd `RoleGet`). Throws "role name not found". */
  roleGet(name: string): Permission[] {
    return [...this.getRole(name).keyPermission];
  }

  /** Every role name, in byte order (etcd `RoleList`). */
  roleList(): string[] {
    return sortedNames(this.roles);
  }

  /**
   * Deletes a role and takes it from every user (etcd `RoleDelete`). Throws "invalid auth
   * management" for root while enabled, "role name not found".
   */
  roleDelete(name: string): void {
    if (this.enabledFlag && name === ROOT) throw Errors.invalidAuthMgmt();
    this.getRole(name);
    this.roles.delete(name);
    this.backend.remove('authRoles', Buffer.from(name));
    for (const user of [...this.users.values()]) {
      if (user.roles.includes(name)) this.putUser({ ...user, roles: user.roles.filter((r) => r !== name) });
    }
    this.changed();
  }

  /**
   * Grants a permission (etcd `RoleGrantPermission`): the first permission whose key is at or
   * after `perm.key` (the list is sorted by key) has its type replaced when key and range end
   * both match; otherwise `perm` is added after the permissions with the same key, even when a
   * later one matches (etcd 3.4 keeps such duplicates). Throws "role name not found", then
   * "permission not given".
   */
  roleGrantPermission(name: string, perm: Permission | undefined): void {
    const role = this.getRole(name);
    // No permission at all, for a role that exists, crashes etcd 3.4 (a nil pointer); etcd 3.5
    // refuses it so.
    if (!perm) throw Errors.permissionNotGiven();
    const keyPermission = [...role.keyPermission];
    const first = keyPermission.findIndex((p) => Buffer.compare(p.key, perm.key) >= 0);
    const at = keyPermission[first];
    if (at && at.key.equals(perm.key) && at.rangeEnd.equals(perm.rangeEnd)) {
      keyPermission[first] = { ...at, permType: perm.permType };
    } else {
      keyPermission.push({ key: perm.key, rangeEnd: perm.rangeEnd, permType: perm.permType });
      keyPermission.sort((a, b) => Buffer.compare(a.key, b.key));
    }
    this.putRole({ ...role, keyPermission });
    this.changed();
  }

  /**
   * Revokes every permission on exactly [key, rangeEnd) (etcd `RoleRevokePermission`). Throws
   * "role name not found", "permission is not granted to the role".
   */
  roleRevokePermission(name: string, key: Buffer, rangeEnd: Buffer): void {
    const role = this.getRole(name);
    const keyPermission = role.keyPermission.filter((p) => !p.key.equals(key) || !p.rangeEnd.equals(rangeEnd));
    if (keyPermission.length === role.keyPermission.length) throw Errors.permissionNotGranted();
    this.putRole({ ...role, keyPermission });
    this.changed();
  }

  private getRole(name: string): Role {
    const role = this.roles.get(name);
    if (!role) throw Errors.roleNotFound();
    return role;
  }

  private putRole(role: Role): void {
    this.roles.set(role.name.toString(), role);
    this.backend.put('authRoles', role.name, Buffer.from(Role.encode(role).finish()));
  }

  // --- permission checks ------------------------------------------------------------------

  /** etcd `refreshRangePermCache`: every user's roles merged into read and write intervals. */
  private refreshPerms(): void {
    this.perms = new Map();
    for (const [name, user] of this.users) {
      const read: KeyInterval[] = [];
      const write: KeyInterval[] = [];
      for (const roleName of user.roles) {
        for (const p of this.roles.get(roleName)?.keyPermission ?? []) {
          const iv = permInterval(p);
          if (p.permType === Permission_Type.READ || p.permType === Permission_Type.READWRITE) read.push(iv);
          if (p.permType === Permission_Type.WRITE || p.permType === Permission_Type.READWRITE) write.push(iv);
        }
      }
      this.perms.set(name, { read: merge(read), write: merge(write) });
    }
  }

  /**
   * etcd `isOpPermitted`: nothing is checked while auth is off; otherwise throws "user name is
   * empty" without a token, "revision of auth store is old" for a token older than the last
   * change of users, roles or permissions (JWT), "permission denied" when the user is gone or
   * its roles do not cover every key of the range. The root role may do anything.
   */
  private check(ai: AuthInfo, key: Buffer, rangeEnd: Buffer, kind: PermKind): void {
    if (!this.enabledFlag) return;
    if (ai.username === '') throw Errors.userEmpty();
    if (ai.revision < this.revisionValue) throw Errors.authOldRevision();
    const user = this.users.get(ai.username);
    if (!user) throw Errors.permissionDenied();
    if (user.roles.includes(ROOT)) return;
    const perms = this.perms.get(ai.username);
    if (!perms || !covers(perms[kind], key, rangeEnd)) throw Errors.permissionDenied();
  }

  /** Read permission on [key, rangeEnd) (etcd `IsRangePermitted`); throws as `check`. */
  checkRange(ai: AuthInfo, key: Buffer, rangeEnd: Buffer): void {
    this.check(ai, key, rangeEnd, 'read');
  }

  /** Write permission on `key` (etcd `IsPutPermitted`); throws as `check`. */
  checkPut(ai: AuthInfo, key: Buffer): void {
    this.check(ai, key, Buffer.alloc(0), 'write');
  }

  /** Write permission on [key, rangeEnd) (etcd `IsDeleteRangePermitted`); throws as `check`. */
  checkDeleteRange(ai: AuthInfo, key: Buffer, rangeEnd: Buffer): void {
    this.check(ai, key, rangeEnd, 'write');
  }

  /**
   * A txn's permissions (etcd `checkTxnAuth`): read on every compare's range, and per op read
   * for ranges, write for puts, write (and read with prev_kv) for deletes. Unlike etcd 3.4,
   * which let them through unchecked, nested txns are checked the same way.
   */
  checkTxn(ai: AuthInfo, r: TxnRequest): void {
    if (!this.enabledFlag) return;
    for (const c of r.compare) this.checkRange(ai, c.key, c.rangeEnd);
    const ops = (list: RequestOp[]) => {
      for (const op of list) {
        if (op.requestRange) this.checkRange(ai, op.requestRange.key, op.requestRange.rangeEnd);
        else if (op.requestPut) this.checkPut(ai, op.requestPut.key);
        else if (op.requestDeleteRange) {
          const d = op.requestDeleteRange;
          if (d.prevKv) this.checkRange(ai, d.key, d.rangeEnd);
          this.checkDeleteRange(ai, d.key, d.rangeEnd);
        } else if (op.requestTxn) this.checkTxn(ai, op.requestTxn);
      }
    };
    ops(r.success);
    ops(r.failure);
  }

  /**
   * Root's privileges (etcd `IsAdminPermitted`): throws "user name is empty" without a token,
   * "user name not found" when the user is gone, "permission denied" without the root role.
   */
  checkAdmin(ai: AuthInfo): void {
    if (!this.enabledFlag) return;
    if (ai.username === '') throw Errors.userEmpty();
    if (!this.getUser(ai.username).roles.includes(ROOT)) throw Errors.permissionDenied();
  }
}

function sortedNames(m: Map<string, unknown>): string[] {
  return [...m.keys()].sort(byUtf8);
}

/** Orders names by their UTF-8 bytes, as Go's `sort.Strings` does (JavaScript's sort compares UTF-16 units). */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * The Auth requests that change `auth`, each applied from its request message (the auth half
 * of etcd's `applierV3backend`): the gRPC Auth service's calls, and the entries of etcd's log
 * an etcd data dir brings (`EtcdServer`). `hashed` is the bcrypt hash of the request's password
 * (`AuthStore.hashPassword`). Each throws as the store method it calls.
 */
export function authChanges(auth: AuthStore) {
  return {
    enable: () => auth.enable(),
    disable: () => auth.disable(),
    userAdd: (r: AuthUserAddRequest, hashed: Buffer) => auth.userAdd(r.name, r.options?.noPassword ? undefined : hashed, r.options?.noPassword ?? false),
    userDelete: (r: AuthUserDeleteRequest) => auth.userDelete(r.name),
    userChangePassword: (r: AuthUserChangePasswordRequest, hashed: Buffer) => auth.userChangePassword(r.name, hashed),
    userGrantRole: (r: AuthUserGrantRoleRequest) => auth.userGrantRole(r.user, r.role),
    userRevokeRole: (r: AuthUserRevokeRoleRequest) => auth.userRevokeRole(r.name, r.role),
    roleAdd: (r: AuthRoleAddRequest) => auth.roleAdd(r.name),
    roleDelete: (r: AuthRoleDeleteRequest) => auth.roleDelete(r.role),
    roleGrantPermission: (r: AuthRoleGrantPermissionRequest) => auth.roleGrantPermission(r.name, r.perm),
    roleRevokePermission: (r: AuthRoleRevokePermissionRequest) => auth.roleRevokePermission(r.role, r.key, r.rangeEnd),
  };
}
