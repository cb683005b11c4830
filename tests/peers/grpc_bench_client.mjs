// The baseline of bench/workload_bench.cpp: a plain @grpc/grpc-js client making the same unary
// calls on one reused channel.
//   node grpc_bench_client.mjs SOCKET METHOD REQUEST_HEX SEQUENTIAL_CALLS CONCURRENCY CONCURRENT_MS
// Prints one JSON line: {"p50_ms", "p99_ms", "calls_per_s"}: the latency of sequential calls
// (after a warm-up), then the calls completed per second by CONCURRENCY callers in a loop.
import grpc from '@grpc/grpc-js';

const [socket, method, requestHex, sequentialText, concurrencyText, concurrentMsText] = process.argv.slice(2);
const request = Buffer.from(requestHex, 'hex');
const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set('workload.spiffe.io', 'true');
const identity = (b) => b;

const call = () =>
  new Promise((resolve, reject) => {
    client.makeUnaryRequest(method, identity, identity, request, metadata, (err, reply) =>
      err ? reject(err) : resolve(reply),
    );
  });

for (let i = 0; i < 200; ++i) await call();  // warm-up

const latencies = [];
for (let i = 0; i < Number(sequentialText); ++i) {
  const t0 = process.hrtime.bigint();
  await call();
  latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
latencies.sort((a, b) => a - b);
const pick = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];

let done = 0;
const until = Date.now() + Number(concurrentMsText);
const start = process.hrtime.bigint();
await Promise.all(
  Array.from({ length: Number(concurrencyText) }, async () => {
    while (Date.now() < until) {
      await call();
      ++done;
    }
  }),
);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({ p50_ms: pick(0.5), p99_ms: pick(0.99), calls_per_s: done / seconds }));
client.close();
