/**
 * The gRPC Maintenance service (etcd `api/v3rpc/maintenance.go`): Status, Alarm, Hash,
 * HashKV, Defragment, Snapshot; MoveLeader and Downgrade answer as a single member does.
 */
import type { Server } from '@grpc/grpc-js';
import { AlarmType, MaintenanceService, type AlarmRequest, type StatusResponse } from '../../proto/gen/rpc.gen.js';
import { SERVER_VERSION, type EtcdServer } from '../etcd-server.js';
import { unary } from './unary.js';

/** etcd `pb.AlarmMember.String()` as Status lists it in `errors`. */
function alarmString(memberId: bigint, alarm: AlarmType): string {
  return `memberID:${memberId} alarm:${AlarmType[alarm]} `;
}

/** Maintenance.Status (etcd `maintenanceServer.Status`). */
export function status(etcd: EtcdServer): StatusResponse {
  return {
    header: etcd.fillHeader(undefined),
    version: SERVER_VERSION,
    dbSize: BigInt(etcd.backend.size()),
    leader: etcd.memberId,
    raftIndex: etcd.raftIndex,
    raftTerm: etcd.raftTerm,
    raftAppliedIndex: etcd.raftIndex,
    errors: etcd.listAlarms().map((a) => alarmString(a.memberID, a.alarm)),
    dbSizeInUse: BigInt(etcd.backend.sizeInUse()),
    isLearner: false,
  };
}

/** Registers the Maintenance service. */
export function addMaintenanceService(grpc: Server, etcd: EtcdServer): void {
  grpc.addService(MaintenanceService, {
    status: unary(() => status(etcd)),
    alarm: unary(async (r: AlarmRequest) => ({
      alarms: await etcd.alarm(r.action, r.memberID, r.alarm),
      header: etcd.fillHeader(undefined),
    })),
  });
}
