/**
 * The gRPC Watch service (etcd `api/v3rpc/watch.go`): each bidi call is one `WatchStream`.
 *
 * Responses are marshalled by the stream itself (events are encoded once and shared), so the
 * method's `responseSerialize` passes Buffers through. The stream lives until the client goes
 * away: a client half-close leaves its watchers running, as in etcd (whose recvLoop returns on
 * EOF while the send side continues until the call's context ends).
 */
import type { Server, ServerDuplexStream } from '@grpc/grpc-js';
import { WatchService, type ResponseHeader, type WatchRequest } from '../../proto/gen/rpc.gen.js';
import { WatchStream } from '../../watch/watch-stream.js';
import type { EtcdServer } from '../etcd-server.js';

/** The Watch service definition with pre-encoded responses. */
const WatchServiceRaw = {
  watch: {
    ...WatchService.watch,
    responseSerialize: (value: Buffer): Buffer => value,
  },
} as const;

/** Registers the Watch service of `etcd` on `grpc`. */
export function addWatchService(grpc: Server, etcd: EtcdServer): void {
  const header = (rev: number): ResponseHeader => ({
    clusterId: etcd.clusterId,
    memberId: etcd.memberId,
    revision: BigInt(rev),
    raftTerm: etcd.raftTerm,
  });
  grpc.addService(WatchServiceRaw, {
    watch: (call: ServerDuplexStream<WatchRequest, Buffer>) => {
      const stream = new WatchStream(
        etcd.watchableStore,
        { write: (bytes) => call.write(bytes) },
        { header, maxRequestBytes: etcd.config.maxRequestBytes, progressIntervalMs: etcd.config.watchProgressNotifyIntervalMs },
      );
      call.on('drain', () => stream.drained());
      call.on('data', (req: WatchRequest) => {
        try {
          stream.handle(req);
        } catch (err) {
          etcd.log.error({ err }, 'watch request failed');
          stream.close();
          call.destroy(err instanceof Error ? err : new Error(String(err)));
        }
      });
      const close = () => stream.close();
      call.on('cancelled', close);
      call.on('error', close);
      call.on('close', close);
      call.on('finish', close);
    },
  });
}
