/**
 * Adapts an async request handler to grpc-js's unary callback style, turning thrown etcd
 * errors into gRPC statuses. A handler never leaves an exception unanswered.
 */
import type { sendUnaryData, ServerUnaryCall, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { TokenMetadata } from '../../auth/auth-store.js';
import { toServiceError } from '../errors.js';

/** Request sizes in bytes as they arrived on the wire, for etcd's --max-request-bytes check. */
const requestSizes = new WeakMap<object, number>();

/** The wire size of a request decoded by a service made with `withWire`, or 0. */
export function requestSize(req: object): number {
  return requestSizes.get(req) ?? 0;
}

/**
 * A copy of a generated service definition whose deserializers remember each request's wire
 * size (see `requestSize`) and hand each request with its bytes to `decoded[method]` where given
 * (for what decoding loses, see empty-range-end.ts), and whose responses are encoded by
 * `serializers` where given (hand-written encoders of src/proto/wire.ts, byte-identical to the
 * generated ones; an encoder may give the bytes as buffers to send in order, which
 * `GrpcServer` sends without joining).
 */
export function withWire<S extends ServiceDefinition>(
  service: S,
  serializers: Partial<Record<keyof S, (value: never) => Buffer | Buffer[]>> = {},
  decoded: Partial<Record<keyof S, (req: never, bytes: Buffer) => void>> = {},
): S {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    const after = decoded[name as keyof S] as ((req: object, bytes: Buffer) => void) | undefined;
    out[name] = {
      ...method,
      requestDeserialize: (buf: Buffer) => {
        const req = method.requestDeserialize(buf) as object;
        requestSizes.set(req, buf.length);
        after?.(req, buf);
        return req;
      },
      responseSerialize: serializers[name as keyof S] ?? method.responseSerialize,
    };
  }
  return out as S;
}

/** Wraps `fn(request, metadata)` as a grpc-js unary handler (`metadata` is the call's, for its auth token). */
export function unary<Req, Res>(fn: (req: Req, metadata: TokenMetadata, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    let result: Res | Promise<Res>;
    try {
      result = fn(call.request, call.metadata, call);
    } catch (err) {
      callback(toServiceError(err));
      return;
    }
    Promise.resolve(result).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err)),
    );
  };
}

export type Handlers = UntypedServiceImplementation;
