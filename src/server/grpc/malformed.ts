/**
 * Requests etcd cannot unmarshal get etcd's answer: gRPC status INTERNAL with gogo's error
 * (see src/proto/unmarshal-check.ts) after grpc-go's prefix, which differs between unary calls
 * and streams, and are never executed. grpc-js would answer a deserializer that throws with
 * its own text ("Error deserializing request"), so the deserializer hands the handler a
 * MalformedRequest instead and the wrapped handler answers with etcd's status: a unary or
 * server-streaming call at once, a bidirectional stream when the bad message arrives (ending
 * the call, as etcd's receive loop does).
 */
import { status as GrpcStatus, type ServiceDefinition, type StatusObject, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { REQUEST_TYPES } from '../../proto/gen/unmarshal-schema.gen.js';
import { unmarshalError } from '../../proto/unmarshal-check.js';

/** grpc-go's status message before the error: a unary request's (its codec's). */
const UNARY_PREFIX = 'grpc: error unmarshalling request: ';
/** ... and a streaming call's message (server-streaming calls read their request as one). */
const STREAM_PREFIX = 'grpc: failed to unmarshal the received message ';

/** What a checked deserializer returns for bytes etcd would refuse. */
export class MalformedRequest {
  readonly status: Partial<StatusObject>;

  constructor(details: string) {
    this.status = { code: GrpcStatus.INTERNAL, details };
  }
}

/**
 * `service` whose request deserializers return a MalformedRequest for bytes etcd's Unmarshal
 * refuses. Throws when a method's request type is not one of src/proto's.
 */
export function checkRequests(service: ServiceDefinition): ServiceDefinition {
  const checked = Object.entries(service).map(([name, method]) => {
    const type = REQUEST_TYPES[method.path];
    if (type === undefined) throw new Error(`checkRequests: ${method.path} is not a method of src/proto`);
    const deserialize = method.requestDeserialize;
    const prefix = method.requestStream || method.responseStream ? STREAM_PREFIX : UNARY_PREFIX;
    return [name, {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        const error = unmarshalError(type, bytes);
        return error === undefined ? deserialize(bytes) : new MalformedRequest(prefix + error);
      },
    }];
  });
  return Object.fromEntries(checked) as ServiceDefinition;
}

/** The grpc-js call objects as seen here. */
interface Call {
  readonly request?: unknown;
  emit(event: string | symbol, ...args: unknown[]): boolean;
}
type Callback = (err: Partial<StatusObject>) => void;

/**
 * `impl` whose handlers answer MalformedRequests (from a `checkRequests` service) with their
 * status, so that the handlers never see one. etcd has no client-streaming methods: a method
 * that takes a stream is bidirectional.
 */
export function rejectMalformed(service: ServiceDefinition, impl: UntypedServiceImplementation): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(service)) {
    const handler = impl[name] as ((call: Call, callback?: Callback) => void) | undefined;
    if (handler === undefined) continue;
    if (!method.requestStream) {
      // The request is decoded before the handler runs; a unary handler answers through the
      // callback, a server-streaming call with its status (grpc-js sends an 'error' as one).
      out[name] = (call: Call, callback?: Callback) => {
        if (!(call.request instanceof MalformedRequest)) handler(call, callback);
        else if (callback) callback(call.request.status);
        else call.emit('error', call.request.status);
      };
    } else {
      // Messages reach the handler's 'data' listeners one by one: the first malformed one
      // fails the call and nothing after it is delivered.
      out[name] = (call: Call) => {
        const emit = call.emit.bind(call);
        let failed = false;
        call.emit = (event, ...args) => {
          if (event !== 'data') return emit(event, ...args);
          if (failed) return false;
          const msg = args[0];
          if (!(msg instanceof MalformedRequest)) return emit(event, ...args);
          failed = true;
          return emit('error', msg.status);
        };
        handler(call);
      };
    }
  }
  return out;
}
