/**
 * The gRPC Watch service (etcd `api/v3rpc/watch.go`): each bidi call is one `WatchStream`.
 *
 * Responses are marshalled by the stream itself (events are encoded once and shared) and
 * written straight to the call's HTTP/2 stream as gRPC messages (see `callTransport`); the
 * method's `responseSerialize` passes Buffers through for the fallback path. The stream lives
 * until the client goes away: a client half-close leaves its watchers running, as in etcd
 * (whose recvLoop returns on EOF while the send side continues until the call's context ends).
 */
import { Metadata, type Server, type ServerDuplexStream } from '@grpc/grpc-js';
import { WatchService, type ResponseHeader, type WatchRequest } from '../../proto/gen/rpc.gen.js';
import { WatchStream, type WatchStreamTransport } from '../../watch/watch-stream.js';
import type { EtcdServer } from '../etcd-server.js';

/** The Watch service definition with pre-encoded responses. */
const WatchServiceRaw = {
  watch: {
    ...WatchService.watch,
    responseSerialize: (value: Buffer): Buffer => value,
  },
} as const;

/** The HTTP/2 stream of a call, as far as `callTransport` uses it. */
interface RawStream {
  write(chunk: Buffer, cb: () => void): boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js does not expose it: with no server
 * interceptors, a call's `call` is grpc-js's BaseServerInterceptingCall, whose `stream` is the
 * `http2.ServerHttp2Stream` it writes messages to. Undefined when that shape is not there
 * (another grpc-js version): the transport then writes through grpc-js.
 */
function rawStream(call: object): RawStream | undefined {
  const inner = (call as { call?: { stream?: Partial<RawStream> } }).call;
  const stream = inner?.stream;
  if (typeof stream?.write !== 'function' || typeof stream.destroyed !== 'boolean') return undefined;
  return stream as RawStream;
}

/**
 * A watch stream's transport on a grpc-js call. Each response is framed as a gRPC message
 * (uncompressed flag, 4-byte big-endian length) in one copy of its parts and written to the
 * call's HTTP/2 stream, one message at a time: the next waits for the previous one's write
 * callback, the pacing grpc-js's own writes have (a message per HTTP/2 send cycle), under which
 * a busy stream's waiting responses keep merging. It skips grpc-js's per-message layers
 * (its object-mode Writable, serializer and second copy), most of a fan-out's cost per
 * response. The response headers grpc-js would send before its first message go first.
 */
export function callTransport(call: ServerDuplexStream<WatchRequest, Buffer>, onDrain: () => void): WatchStreamTransport {
  const raw = rawStream(call);
  if (!raw) {
    call.on('drain', onDrain);
    return { write: (parts, length) => call.write(Buffer.concat(parts, length)) };
  }
  let headersSent = false;
  return {
    write: (parts, length) => {
      if (raw.destroyed || raw.writableEnded) return true; // the call's events close the WatchStream
      if (!headersSent) {
        call.sendMetadata(new Metadata());
        headersSent = true;
      }
      const message = Buffer.allocUnsafe(5 + length);
      message[0] = 0;
      message.writeUInt32BE(length, 1);
      let at = 5;
      for (const p of parts) at += p.copy(message, at);
      raw.write(message, onDrain);
      return false;
    },
  };
}

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
      const stream: WatchStream = new WatchStream(
        etcd.watchableStore,
        callTransport(call, () => stream.drained()),
        { header, maxRequestBytes: etcd.config.maxRequestBytes, progressIntervalMs: etcd.config.watchProgressNotifyIntervalMs },
      );
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
