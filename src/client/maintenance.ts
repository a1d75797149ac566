/**
 * Maintenance calls of the client (etcd clientv3's `Maintenance` interface): alarms,
 * defragmentation, the KV hash, the backend snapshot and leadership transfer. Every call goes
 * to one endpoint (round-robin) with the client's token; with auth enabled etcd requires the
 * root role for all of them but the alarm list and `hashKV`.
 */
import {
  AlarmRequest_AlarmAction,
  AlarmType,
  type AlarmMember,
  type AlarmResponse,
  type DefragmentResponse,
  type HashKVResponse,
  type MoveLeaderResponse,
} from '../proto/gen/rpc.gen.js';
import type { CallOptions, Connection } from './connection.js';
import { toBigInt, type Int64 } from './kv.js';

/** `client.maintenance`: one method per Maintenance call; each takes the client's {@link CallOptions}. */
export class MaintenanceApi {
  private readonly connection: Connection;

  /** @internal Created by the Client. */
  constructor(connection: Connection) {
    this.connection = connection;
  }

  /** The raised alarms of every member (`alarms`: member ID and type, e.g. `AlarmType.NOSPACE`). */
  alarms(options?: CallOptions): Promise<AlarmResponse> {
    const request = { action: AlarmRequest_AlarmAction.GET, memberID: 0n, alarm: AlarmType.NONE };
    return this.connection.unary((ep) => ep.maintenance.alarm.bind(ep.maintenance), request, options, true);
  }

  /**
   * Disarms one alarm (`member`: its member ID and type), or, without `member`, every raised
   * alarm, one call each after listing them (clientv3's `AlarmDisarm` with an empty member).
   * Writes are accepted again once no NOSPACE alarm is left.
   * @returns the last answer: the alarms disarmed by that call (an empty list when none was raised).
   */
  async alarmDisarm(member?: AlarmMember, options?: CallOptions): Promise<AlarmResponse> {
    const disarm = (m: AlarmMember): Promise<AlarmResponse> =>
      this.connection.unary(
        (ep) => ep.maintenance.alarm.bind(ep.maintenance),
        { action: AlarmRequest_AlarmAction.DEACTIVATE, memberID: m.memberID, alarm: m.alarm },
        options,
        true,
      );
    if (member !== undefined) return disarm(member);
    const raised = await this.alarms(options);
    let last: AlarmResponse = { header: raised.header, alarms: [] };
    for (const m of raised.alarms) last = await disarm(m);
    return last;
  }

  /** Defragments the backend of the endpoint called, releasing the space of deleted data. */
  defragment(options?: CallOptions): Promise<DefragmentResponse> {
    return this.connection.unary((ep) => ep.maintenance.defragment.bind(ep.maintenance), {}, options, true);
  }

  /**
   * The hash of the key space up to `revision` (0: the newest), with `compactRevision` and
   * the `header.revision` it was taken at: equal hashes at one revision mean equal data.
   * @throws CompactedError / FutureRevisionError for a revision out of range.
   */
  hashKV(revision: Int64 = 0, options?: CallOptions): Promise<HashKVResponse> {
    return this.connection.unary((ep) => ep.maintenance.hashKv.bind(ep.maintenance), { revision: toBigInt(revision) }, options, true);
  }

  /**
   * The backend as etcd's snapshot file (what `etcdctl snapshot save` writes: a bbolt database
   * followed by its SHA-256), in chunks as the server sends them; write them in order, e.g.
   * `await pipeline(client.maintenance.snapshot(), createWriteStream('backup.db'))`.
   * `timeoutMs` bounds the whole transfer (no deadline by default).
   * @throws EtcdClientError subclasses as the stream fails; AbortError when `signal` fires or the client closes.
   */
  async *snapshot(options?: CallOptions): AsyncGenerator<Buffer> {
    const responses = this.connection.serverStream((ep) => ep.maintenance.snapshot.bind(ep.maintenance), {}, options);
    for await (const response of responses) yield response.blob;
  }

  /**
   * Hands leadership to member `targetId` (a single member answers its own ID at once).
   * @throws `etcdserver: bad leader transferee` (FAILED_PRECONDITION) for an ID that is not a member.
   */
  moveLeader(targetId: Int64, options?: CallOptions): Promise<MoveLeaderResponse> {
    return this.connection.unary((ep) => ep.maintenance.moveLeader.bind(ep.maintenance), { targetID: toBigInt(targetId) }, options, false);
  }
}
