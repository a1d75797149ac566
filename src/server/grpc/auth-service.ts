/**
 * The gRPC Auth service (etcd `api/v3rpc/auth.go` and the auth half of `apply_auth.go`): each
 * call is one raft entry of the EtcdServer (`authRequest`), answered with a header once durable.
 *
 * With auth on, every call but Authenticate and AuthStatus needs root's privileges, except that
 * a user may get itself (UserGet) and a role it has (RoleGet). A token the server did not give is refused
 * with "invalid auth token" before anything else. Passwords are hashed before the entry, on
 * libuv's pool, so the main thread never runs bcrypt.
 */
import { authChanges, type AuthInfo } from '../../auth/auth-store.js';
import {
  AuthService,
  type AuthenticateRequest,
  type AuthRoleGetRequest,
  type AuthStatusRequest,
  type AuthUserGetRequest,
} from '../../proto/gen/rpc.gen.js';
import type { EtcdServer } from '../etcd-server.js';
import type { GrpcServer as Server } from '../transport/grpc-server.js';
import { unary } from './unary.js';

/** Registers the Auth service of `etcd` on `grpc`. */
export function addAuthService(grpc: Server, etcd: EtcdServer): void {
  const auth = etcd.auth;
  const changes = authChanges(auth);
  /** An admin-only call: its result is applied under root's privileges. */
  const admin = <Req, R extends object>(apply: (r: Req) => R) =>
    unary((r: Req, md) => etcd.authRequest(auth.authInfo(md), true, () => apply(r)));
  /** A call that hashes a password first (the user may be gone by the time it is applied). */
  const withPassword = <Req extends { password: string }>(apply: (r: Req, hashed: Buffer) => void, skip: (r: Req) => boolean = () => false) =>
    unary(async (r: Req, md) => {
      const ai = auth.authInfo(md);
      const hashed = skip(r) ? Buffer.alloc(0) : await auth.hashPassword(r.password);
      return etcd.authRequest(ai, true, () => {
        apply(r, hashed);
        return {};
      });
    });
  /** Root, or `allowed(ai)`: the user itself or a holder of the role (etcd `authApplierV3.UserGet` / `RoleGet`). */
  const adminOr = <Req, R extends object>(allowed: (ai: AuthInfo, r: Req) => boolean, apply: (r: Req) => R) =>
    unary((r: Req, md) => {
      const ai = auth.authInfo(md);
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
  const change = <Req>(apply: (r: Req) => void) =>
    admin((r: Req) => {
      apply(r);
      return {};
    });

  grpc.addService(AuthService, {
    authEnable: change(changes.enable),
    authDisable: change(changes.disable),
    // etcd 3.5: a raft entry like the others, open to every caller with a valid token or none.
    authStatus: unary((_r: AuthStatusRequest, md) =>
      etcd.authRequest(auth.authInfo(md), false, () => ({ enabled: auth.enabled, authRevision: BigInt(auth.revision) })),
    ),
    authenticate: unary((r: AuthenticateRequest, md) => etcd.authenticate(r.name, r.password, md)),
    userAdd: withPassword(changes.userAdd, (r) => r.options?.noPassword ?? false),
    userGet: adminOr(
      (ai, r: AuthUserGetRequest) => ai.username === r.name,
      (r: AuthUserGetRequest) => ({ roles: auth.userGet(r.name) }),
    ),
    userList: admin(() => ({ users: auth.userList() })),
    userDelete: change(changes.userDelete),
    userChangePassword: withPassword(changes.userChangePassword),
    userGrantRole: change(changes.userGrantRole),
    userRevokeRole: change(changes.userRevokeRole),
    roleAdd: change(changes.roleAdd),
    roleGet: adminOr(
      (ai, r: AuthRoleGetRequest) => auth.hasRole(ai.username, r.role),
      (r: AuthRoleGetRequest) => ({ perm: auth.roleGet(r.role) }),
    ),
    roleList: admin(() => ({ roles: auth.roleList() })),
    roleDelete: change(changes.roleDelete),
    roleGrantPermission: change(changes.roleGrantPermission),
    roleRevokePermission: change(changes.roleRevokePermission),
  });
}
