/**
 * Requests etcd cannot unmarshal get etcd's answer and are never executed: gRPC status INTERNAL
 * with gogo's error (see src/proto/unmarshal-check.ts) after grpc-go's prefix, which the gRPC
 * server adds when a request deserializer throws (src/server/transport/grpc-server.ts; the
 * prefix differs between unary calls and streams). A oneof sent with several members is decoded
 * as gogo decodes it: the last member on the wire.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { REQUEST_TYPES } from '../../proto/gen/unmarshal-schema.gen.js';
import { checkRequest } from '../../proto/unmarshal-check.js';

/**
 * `service` whose request deserializers throw gogo's error for bytes etcd's Unmarshal refuses,
 * before the generated decoder (which accepts some of them) sees them, and decode oneofs as gogo
 * does. Throws when a method's request type is not one of src/proto's.
 */
export function checkRequests(service: ServiceDefinition): ServiceDefinition {
  const checked = Object.entries(service).map(([name, method]) => {
    const type = REQUEST_TYPES[method.path];
    if (type === undefined) throw new Error(`checkRequests: ${method.path} is not a method of src/proto`);
    const deserialize = method.requestDeserialize;
    return [name, {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        const checked = checkRequest(type, bytes);
        if ('error' in checked) throw new Error(checked.error);
        return deserialize(Buffer.isBuffer(checked.bytes) ? checked.bytes : Buffer.from(checked.bytes));
      },
    }];
  });
  return Object.fromEntries(checked) as ServiceDefinition;
}
