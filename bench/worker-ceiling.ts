/**
 * Could gRPC on a second thread lift put throughput? A grpc-js server answering etcd's KV Put,
 * either on the main thread (`single`) or in a worker thread that posts every request to the
 * main thread and answers with what comes back (`worker`: requests and answers travel in
 * batches, one message per event-loop turn each way). The main thread decodes the request and
 * encodes a PutResponse, standing in for the store. Run etcdbench's put mode against it and
 * read the throughput and each thread's CPU (/proc/PID/task/TID/stat).
 *
 * usage: node --import tsx bench/worker-ceiling.ts single|worker [port=23797]
 *        /tmp/etcdbench-bin/etcdbench -endpoint 127.0.0.1:23797 -mode put -total 40000 -conc 64 -clients 16
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { KVService, PutRequest, PutResponse } from '../src/proto/gen/rpc.gen.js';

type Handler = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => void;
/** Requests or answers in flight between the threads: [call id, protobuf bytes]. */
type Batch = [number, Uint8Array][];

let revision = 3n;
/** The main thread's share of a put: decode the request, encode an answer. */
function answer(request: Uint8Array): Buffer {
  PutRequest.decode(request);
  revision++;
  return Buffer.from(PutResponse.encode({ header: { clusterId: 1n, memberId: 2n, revision, raftTerm: 2n }, prevKv: undefined }).finish());
}

function serve(port: number, put: Handler): void {
  const server = new Server({ 'grpc.enable_channelz': 0 });
  const raw = { ...KVService.put, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b };
  server.addService({ put: raw }, { put });
  server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
  });
}

if (isMainThread) {
  const mode = process.argv[2];
  const port = Number(process.argv[3] ?? 23797);
  if (mode === 'single') {
    serve(port, (call, callback) => callback(null, answer(call.request)));
  } else if (mode === 'worker') {
    // A worker does not inherit `--import tsx`: it registers tsx itself, then loads this file.
    const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
    const code = `import { register } from ${tsx}; register(); await import(${JSON.stringify(import.meta.url)});`;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData: { port } });
    worker.on('message', (requests: Batch) => {
      const answers: Batch = requests.map(([id, request]) => [id, answer(request)]);
      worker.postMessage(answers);
    });
  } else {
    console.error('usage: worker-ceiling.ts single|worker [port]');
    process.exit(2);
  }
} else {
  const pending = new Map<number, sendUnaryData<Buffer>>();
  let batch: Batch = [];
  let nextId = 0;
  parentPort!.on('message', (answers: Batch) => {
    for (const [id, bytes] of answers) {
      const callback = pending.get(id)!;
      pending.delete(id);
      callback(null, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    }
  });
  serve((workerData as { port: number }).port, (call, callback) => {
    const id = nextId++;
    pending.set(id, callback);
    if (batch.length === 0) {
      setImmediate(() => {
        parentPort!.postMessage(batch);
        batch = [];
      });
    }
    batch.push([id, new Uint8Array(call.request)]);
  });
}
