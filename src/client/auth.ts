/**
 * Auth management calls of the client (etcd clientv3's `Auth` interface): users, roles and
 * their key permissions, and turning authentication on and off. Every call is sent with the
 * client's token (see `ConnectionOptions.auth`); with auth enabled, all but `userGet` of the
 * caller itself and `roleGet` of one of its roles need the root role.
 */
import { Permission_Type, type Permission } from '../proto/gen/auth.gen.js';
import type {
  AuthDisableResponse,
  AuthEnableResponse,
  AuthRoleAddResponse,
  AuthRoleDeleteResponse,
  AuthRoleGetResponse,
  AuthRoleGrantPermissionResponse,
  AuthRoleListResponse,
  AuthRoleRevokePermissionResponse,
  AuthStatusResponse,
  AuthUserAddResponse,
  AuthUserChangePasswordResponse,
  AuthUserDeleteResponse,
  AuthUserGetResponse,
  AuthUserGrantRoleResponse,
  AuthUserListResponse,
  AuthUserRevokeRoleResponse,
} from '../proto/gen/rpc.gen.js';
import type { CallOptions, Connection } from './connection.js';
import { keyRange, type Bytes, type RangeOptions } from './kv.js';

/** A key permission's type, as etcdctl names them. */
export type PermissionType = 'read' | 'write' | 'readwrite';

const PERMISSION_TYPES: Record<PermissionType, Permission_Type> = {
  read: Permission_Type.READ,
  write: Permission_Type.WRITE,
  readwrite: Permission_Type.READWRITE,
};

/**
 * `client.auth`. Errors are etcd's, typed where clients act on them (PermissionDeniedError,
 * InvalidAuthTokenError, …; others as EtcdClientError with etcd's message, e.g.
 * `etcdserver: user name already exists`).
 */
export class AuthApi {
  private readonly connection: Connection;

  /** @internal Created by the Client. */
  constructor(connection: Connection) {
    this.connection = connection;
  }

  /** Turns authentication on. @throws `etcdserver: root user does not exist`, `… does not have root role`. */
  authEnable(options?: CallOptions): Promise<AuthEnableResponse> {
    return this.connection.unary((ep) => ep.auth.authEnable.bind(ep.auth), {}, options, false);
  }

  /** Turns authentication off; every token becomes invalid. */
  authDisable(options?: CallOptions): Promise<AuthDisableResponse> {
    return this.connection.unary((ep) => ep.auth.authDisable.bind(ep.auth), {}, options, false);
  }

  /**
   * Whether authentication is on (`enabled`) and the auth store's revision (`authRevision`):
   * etcd 3.5's AuthStatus, which any client may call. @throws `etcdserver: invalid auth token`
   * for a token the server did not give; `Unimplemented` from etcd 3.4.
   */
  authStatus(options?: CallOptions): Promise<AuthStatusResponse> {
    return this.connection.unary((ep) => ep.auth.authStatus.bind(ep.auth), {}, options, true);
  }

  /**
   * Adds a user; with `noPassword` it can only be used through a client certificate.
   * @throws `etcdserver: user name already exists`, `etcdserver: user name is empty`.
   */
  userAdd(name: string, password: string, options: CallOptions & { noPassword?: boolean } = {}): Promise<AuthUserAddResponse> {
    const noPassword = options.noPassword ?? false;
    return this.connection.unary((ep) => ep.auth.userAdd.bind(ep.auth), { name, password: noPassword ? '' : password, options: { noPassword } }, options, false);
  }

  /** A user's roles (`roles`, sorted). @throws `etcdserver: user name not found`. */
  userGet(name: string, options?: CallOptions): Promise<AuthUserGetResponse> {
    return this.connection.unary((ep) => ep.auth.userGet.bind(ep.auth), { name }, options, true);
  }

  /** Every user name (`users`). */
  userList(options?: CallOptions): Promise<AuthUserListResponse> {
    return this.connection.unary((ep) => ep.auth.userList.bind(ep.auth), {}, options, true);
  }

  /** Deletes a user. @throws `etcdserver: user name not found`, `etcdserver: invalid auth management` (root while enabled). */
  userDelete(name: string, options?: CallOptions): Promise<AuthUserDeleteResponse> {
    return this.connection.unary((ep) => ep.auth.userDelete.bind(ep.auth), { name }, options, false);
  }

  /** Sets a user's password; the user's tokens become invalid. @throws `etcdserver: user name not found`. */
  userChangePassword(name: string, password: string, options?: CallOptions): Promise<AuthUserChangePasswordResponse> {
    return this.connection.unary((ep) => ep.auth.userChangePassword.bind(ep.auth), { name, password }, options, false);
  }

  /** Grants a role (granting one the user has changes nothing). @throws `etcdserver: role name not found`. */
  userGrantRole(user: string, role: string, options?: CallOptions): Promise<AuthUserGrantRoleResponse> {
    return this.connection.unary((ep) => ep.auth.userGrantRole.bind(ep.auth), { user, role }, options, false);
  }

  /** Revokes a role. @throws `etcdserver: role is not granted to the user`. */
  userRevokeRole(name: string, role: string, options?: CallOptions): Promise<AuthUserRevokeRoleResponse> {
    return this.connection.unary((ep) => ep.auth.userRevokeRole.bind(ep.auth), { name, role }, options, false);
  }

  /** Adds a role with no permissions. @throws `etcdserver: role name already exists`. */
  roleAdd(name: string, options?: CallOptions): Promise<AuthRoleAddResponse> {
    return this.connection.unary((ep) => ep.auth.roleAdd.bind(ep.auth), { name }, options, false);
  }

  /** A role's permissions (`perm`, sorted by key). @throws `etcdserver: role name not found`. */
  roleGet(role: string, options?: CallOptions): Promise<AuthRoleGetResponse> {
    return this.connection.unary((ep) => ep.auth.roleGet.bind(ep.auth), { role }, options, true);
  }

  /** Every role name (`roles`). */
  roleList(options?: CallOptions): Promise<AuthRoleListResponse> {
    return this.connection.unary((ep) => ep.auth.roleList.bind(ep.auth), {}, options, true);
  }

  /** Deletes a role and takes it from every user. */
  roleDelete(role: string, options?: CallOptions): Promise<AuthRoleDeleteResponse> {
    return this.connection.unary((ep) => ep.auth.roleDelete.bind(ep.auth), { role }, options, false);
  }

  /**
   * Grants `type` on a key, or on a range with `prefix` / `rangeEnd` / `fromKey` (as for get).
   * A permission on the same key and range end has its type replaced.
   */
  roleGrantPermission(name: string, key: Bytes, type: PermissionType, options: CallOptions & RangeOptions = {}): Promise<AuthRoleGrantPermissionResponse> {
    const perm: Permission = { ...keyRange(key, options), permType: PERMISSION_TYPES[type] };
    return this.connection.unary((ep) => ep.auth.roleGrantPermission.bind(ep.auth), { name, perm }, options, false);
  }

  /** Revokes the permission on exactly that key or range. @throws `etcdserver: permission is not granted to the role`. */
  roleRevokePermission(role: string, key: Bytes, options: CallOptions & RangeOptions = {}): Promise<AuthRoleRevokePermissionResponse> {
    return this.connection.unary((ep) => ep.auth.roleRevokePermission.bind(ep.auth), { role, ...keyRange(key, options) }, options, false);
  }
}
