/**
 * The gRPC health service (`grpc.health.v1.Health`, grpc-go's `health.Server` as etcd 3.4
 * registers it): the empty service name, which stands for the whole server, is SERVING from
 * the start; any other name is unknown. What Kubernetes' gRPC probes and grpc-health-probe ask.
 *
 * - Check: SERVING for "", else NOT_FOUND "unknown service".
 * - Watch: the status now (SERVICE_UNKNOWN for a name it does not know), then nothing more
 *   while the status stays; the stream stays open until the client ends it.
 */
import { status as Status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthService,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from '../../proto/gen/health.gen.js';
import type { GrpcServer } from '../transport/grpc-server.js';

/** The statuses by service name, as etcd sets them. */
const STATUSES = new Map<string, ServingStatus>([['', ServingStatus.SERVING]]);

/** Registers the health service on `grpc`. */
export function addHealthService(grpc: GrpcServer): void {
  grpc.addService(HealthService, {
    check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>) => {
      const status = STATUSES.get(call.request.service);
      if (status === undefined) callback({ code: Status.NOT_FOUND, details: 'unknown service' });
      else callback(null, { status });
    },
    watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      call.write({ status: STATUSES.get(call.request.service) ?? ServingStatus.SERVICE_UNKNOWN });
    },
  });
}
