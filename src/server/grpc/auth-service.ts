/**
 * The gRPC Auth service (etcd `api/v3rpc/auth.go` and the auth half of `apply_auth.go`): each
 * call is one raft entry of the EtcdServer (`authRequest`), answered with a header once durable.
 *
 * With auth on, every call but Authenticate and AuthStatus needs root's privileges, except that
 * a user may get itself (UserGet) and a role it has (RoleGet). A token the server did not give is refused
 * with "invalid auth token" before anything else, then a request too large for
 * `--max-request-bytes` (etcd holds every request it proposes to it). Passwords are hashed
 * before the entry, on libuv's pool, so the main thread never runs bcrypt.
 */
import { status as Status } from '@grpc/grpc-js';
import { authChanges, type AuthInfo, type TokenMetadata } from '../../auth/auth-store.js';
import {
  AuthService,
  type AuthenticateRequest,
  type AuthRoleGetRequest,
  type AuthStatusRequest,
  type AuthUserGetRequest,
} from '../../proto/gen/rpc.gen.js';
import { contextErrorStatus } from '../errors.js';
import { RAFT_FIELD, type EtcdServer } from '../etcd-server.js';
import type { GrpcServer as Server, ServerCall } from '../transport/grpc-server.js';
import { unary } from './unary.js';

/** Registers the Auth service of `etcd` on `grpc`. */
export function addAuthService(grpc: Server, etcd: EtcdServer): void {
  const auth = etcd.auth;
  const changes = authChanges(auth);
  type Method = keyof typeof AuthService;
  /** The caller (its token checked), once the size of the request etcd proposes is too (both as etcd checks them before proposing). */
  const caller = (method: Method, r: object, md: TokenMetadata): AuthInfo => {
    const ai = auth.authInfo(md);
    etcd.checkRequestSize(ai, AuthService[method].requestSerialize(r as never).length, RAFT_FIELD.auth);
    return ai;
  };
  /** An admin-only call: its result is applied under root's privileges. */
  const admin = <Req extends object, R extends object>(method: Method, apply: (r: Req) => R) =>
    unary((r: Req, md) => etcd.authRequest(caller(method, r, md), true, () => apply(r)));
  /** A call that hashes a password first (the user may be gone by the time it is applied). */
  const withPassword = <Req extends { password: string }>(method: Method, apply: (r: Req, hashed: Buffer) => void, skip: (r: Req) => boolean = () => false) =>
    unary(async (r: Req, md) => {
      const ai = caller(method, r, md);
      const hashed = skip(r) ? Buffer.alloc(0) : await auth.hashPassword(r.password);
      return etcd.authRequest(ai, true, () => {
        apply(r, hashed);
        return {};
      });
    });
  /** Root, or `allowed(ai)`: the user itself or a holder of the role (etcd `authApplierV3.UserGet` / `RoleGet`). */
  const adminOr = <Req extends object, R extends object>(method: Method, allowed: (ai: AuthInfo, r: Req) => boolean, apply: (r: Req) => R) =>
    unary((r: Req, md) => {
      const ai = caller(method, r, md);
      return etcd.authRequest(ai, false, () => {
        try {
          auth.checkAdmin(ai);
        } catch (err) {
          if (!allowed(ai, r)) throw err;
        }
        return apply(r);
      });
    });
  /** An admin-only call that changes something and answers with a bare header. */
  const change = <Req extends object>(method: Method, apply: (r: Req) => void) =>
    admin(method, (r: Req) => {
      apply(r);
      return {};
    });

  grpc.addService(AuthService, {
    authEnable: change('authEnable', changes.enable),
    authDisable: change('authDisable', changes.disable),
    // etcd 3.5: a raft entry like the others, open to every caller with a valid token or none.
    authStatus: unary((r: AuthStatusRequest, md) =>
      etcd.authRequest(caller('authStatus', r, md), false, () => ({ enabled: auth.enabled, authRevision: BigInt(auth.revision) })),
    ),
    // etcd proposes the token with the caller's context: one that ended while the password was
    // checked proposes nothing, and the call ends with the bare context error (code Unknown).
    authenticate: unary((r: AuthenticateRequest, md, call) =>
      etcd.authenticate(r.name, r.password, md, () => {
        if (!call.cancelled) return undefined;
        const status = (call as unknown as ServerCall).pendingStatus;
        return new Error(contextErrorStatus(status?.code === Status.DEADLINE_EXCEEDED ? 'deadline' : 'cancelled').details);
      }),
    ),
    userAdd: withPassword('userAdd', changes.userAdd, (r) => r.options?.noPassword ?? false),
    userGet: adminOr(
      'userGet',
      (ai, r: AuthUserGetRequest) => ai.username === r.name,
      (r: AuthUserGetRequest) => ({ roles: auth.userGet(r.name) }),
    ),
    userList: admin('userList', () => ({ users: auth.userList() })),
    userDelete: change('userDelete', changes.userDelete),
    userChangePassword: withPassword('userChangePassword', changes.userChangePassword),
    userGrantRole: change('userGrantRole', changes.userGrantRole),
    userRevokeRole: change('userRevokeRole', changes.userRevokeRole),
    roleAdd: change('roleAdd', changes.roleAdd),
    roleGet: adminOr(
      'roleGet',
      (ai, r: AuthRoleGetRequest) => auth.hasRole(ai.username, r.role),
      (r: AuthRoleGetRequest) => ({ perm: auth.roleGet(r.role) }),
    ),
    roleList: admin('roleList', () => ({ roles: auth.roleList() })),
    roleDelete: change('roleDelete', changes.roleDelete),
    roleGrantPermission: change('roleGrantPermission', changes.roleGrantPermission),
    roleRevokePermission: change('roleRevokePermission', changes.roleRevokePermission),
  });
}
