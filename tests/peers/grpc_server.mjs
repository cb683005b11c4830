// gRPC test peer built on @grpc/grpc-js, plus a raw HTTP/2 peer for the framing faults that a
// conforming gRPC server never produces.
//   node grpc_server.mjs DIR
// Prints one JSON line when ready:
//   {"unix":"DIR/grpc.sock","tcp_port":N,"raw_unix":"DIR/raw.sock"}
//
// grpc-js methods (messages are raw bytes; the request is a JSON object of knobs):
//   /awaken.test.Test/Unary   knobs: reply (string), size (reply of N bytes), delay_ms,
//                             status + message (fail with that code), require_header (name that
//                             must be in the call metadata, else INVALID_ARGUMENT)
//   /awaken.test.Test/Stream  knobs: count, size, interval_ms, status + message (final status),
//                             reset_after (RST_STREAM after N messages), kill_after (SIGKILL the
//                             peer after N messages), hang_after (stop writing after N messages
//                             and never end)
// Every request's metadata is echoed in response metadata "x-seen-<name>" for names that start
// with "workload." or "x-".
//
// Raw HTTP/2 paths (/raw/<case>): hold (open until a GOAWAY), goaway, compressed, oversized (length prefix 64 MiB), truncated,
// no_status, http_503, bad_content_type, trailers_only (grpc-status 5 with "not%20here"),
// split (one 100000-byte message in many DATA frames, then five tiny ones in one frame).
import grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: grpc_server.mjs DIR');
  process.exit(2);
}

const raw = {
  requestStream: false,
  requestSerialize: (b) => b,
  requestDeserialize: (b) => b,
  responseSerialize: (b) => b,
  responseDeserialize: (b) => b,
};
const service = {
  Unary: { ...raw, path: '/awaken.test.Test/Unary', responseStream: false },
  Stream: { ...raw, path: '/awaken.test.Test/Stream', responseStream: true },
};

function knobs(buffer) {
  try {
    return buffer.length ? JSON.parse(buffer.toString('utf8')) : {};
  } catch {
    return { status: grpc.status.INVALID_ARGUMENT, message: 'request is not JSON' };
  }
}

function echoed(metadata) {
  const out = new grpc.Metadata();
  for (const [name, value] of Object.entries(metadata.getMap())) {
    if (name.startsWith('workload.') || name.startsWith('x-')) out.set(`x-seen-${name}`, String(value));
  }
  return out;
}

function h2stream(call) {
  let c = call.call;
  for (let i = 0; c && i < 16; i++, c = c.nextCall) {
    if (c.stream && typeof c.stream.close === 'function') return c.stream;
  }
  return undefined;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const impl = {
  async Unary(call, callback) {
    const k = knobs(call.request);
    call.sendMetadata(echoed(call.metadata));
    if (k.delay_ms) await sleep(k.delay_ms);
    if (k.require_header && call.metadata.get(k.require_header).length === 0) {
      return callback({ code: grpc.status.INVALID_ARGUMENT, details: `missing ${k.require_header}` });
    }
    if (k.status) return callback({ code: k.status, details: k.message ?? '' });
    const reply = k.size !== undefined ? Buffer.alloc(k.size, 'r') : Buffer.from(k.reply ?? 'pong');
    callback(null, reply);
  },
  async Stream(call) {
    const k = knobs(call.request);
    call.sendMetadata(echoed(call.metadata));
    const count = k.count ?? 3;
    for (let i = 0; i < count; i++) {
      if (call.cancelled) return;
      if (k.reset_after === i) {
        h2stream(call)?.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      if (k.kill_after === i) process.kill(process.pid, 'SIGKILL');
      if (k.hang_after === i) return;
      const msg = k.size !== undefined ? Buffer.alloc(k.size, String(i % 10)) : Buffer.from(`m${i}`);
      call.write(msg);
      if (k.interval_ms) await sleep(k.interval_ms);
    }
    if (k.hang_after === count) return;
    if (k.status) {
      call.emit('error', { code: k.status, details: k.message ?? '' });
      return;
    }
    call.end();
  },
};

function frame(payload, compressed = 0, declared = payload.length) {
  const header = Buffer.alloc(5);
  header.writeUInt8(compressed, 0);
  header.writeUInt32BE(declared, 1);
  return Buffer.concat([header, payload]);
}

function rawHandler(stream, headers) {
  const which = String(headers[':path']).replace('/raw/', '');
  stream.on('error', () => {});
  stream.on('data', () => {});
  const ok = { ':status': 200, 'content-type': 'application/grpc' };
  const send = (data, trailers) => {
    stream.respond(ok, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end(data);
  };
  switch (which) {
    case 'compressed': return send(frame(Buffer.from('zz'), 1), { 'grpc-status': '0' });
    case 'oversized': return send(frame(Buffer.from('x'), 0, 64 * 1024 * 1024), { 'grpc-status': '0' });
    case 'truncated': return send(frame(Buffer.from('abc'), 0, 10), { 'grpc-status': '0' });
    case 'no_status':
      stream.respond(ok);
      return stream.end(frame(Buffer.from('lonely')));
    case 'http_503':
      stream.respond({ ':status': 503, 'content-type': 'text/plain' });
      return stream.end('busy');
    case 'bad_content_type':
      stream.respond({ ':status': 200, 'content-type': 'text/html' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      return stream.end('<html>');
    case 'trailers_only':
      stream.respond({ ...ok, 'grpc-status': '5', 'grpc-message': 'not%20here%20%E2%9C%93' }, { endStream: true });
      return;
    case 'split': {
      stream.respond(ok, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      const big = frame(Buffer.alloc(100000, 'b'));
      for (let off = 0; off < big.length; off += 7001) stream.write(big.subarray(off, off + 7001));
      const tiny = Buffer.concat([0, 1, 2, 3, 4].map((i) => frame(Buffer.from(`t${i}`))));
      return stream.end(tiny);
    }
    case 'hold': {  // one message, then open until a GOAWAY on its connection ends it cleanly
      stream.respond(ok, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.write(frame(Buffer.from('held')));
      const held = stream.session.held ?? (stream.session.held = []);
      held.push(stream);
      return;
    }
    case 'goaway': {  // GOAWAY(NO_ERROR) that keeps the streams before this one, which then end
      const session = stream.session;
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id - 2);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      setTimeout(() => {
        for (const h of session.held ?? []) if (!h.destroyed) h.end(frame(Buffer.from('after goaway')));
        setTimeout(() => session.close(), 50);
      }, 100);
      return;
    }
    default:
      stream.respond({ ...ok, 'grpc-status': '12', 'grpc-message': 'unknown raw case' }, { endStream: true });
  }
}

const server = new grpc.Server();
server.addService(service, impl);
const bind = (address) => new Promise((resolve, reject) =>
  server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
const unix = path.join(dir, 'grpc.sock');
fs.rmSync(unix, { force: true });  // left by a killed predecessor
await bind(`unix://${unix}`);
const tcp_port = await bind('127.0.0.1:0');

const raw_unix = path.join(dir, 'raw.sock');
fs.rmSync(raw_unix, { force: true });
const rawServer = http2.createServer();
rawServer.on('stream', rawHandler);
await new Promise((resolve) => rawServer.listen(raw_unix, resolve));

console.log(JSON.stringify({ unix, tcp_port, raw_unix }));
