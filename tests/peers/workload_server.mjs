// A SPIFFE Workload API server (@grpc/grpc-js, workload.proto) on a unix socket, for the trust
// domain example.org, signing ES256 JWT-SVIDs with npm jose, and a control port for faults.
//   node workload_server.mjs SOCKET_PATH [--tcp]
// A stale socket file is removed first, so a peer can be restarted on the same path. Prints one
// JSON line when ready: {"socket":PATH, "control_port":N, "tcp_port":N (with --tcp), "kid":KID}
//
// Workload API (every call needs metadata workload.spiffe.io: true, else INVALID_ARGUMENT
// "security header missing from request"):
//   FetchJWTBundles  a stream: the current bundles at once and after every change; example.org
//                    (JWKS with use jwt-svid, spiffe_sequence, spiffe_refresh_hint) and
//                    federated.org
//   FetchJWTSVID     ES256 JWT-SVIDs for the audiences, exp in 300 s: spiffe://example.org/
//                    workload (hint "primary"), spiffe://example.org/other ("secondary"), and a
//                    third SVID that repeats the hint "primary"; with spiffe_id set, that one only
//   ValidateJWTSVID  verifies with the current keys and the audience, returns the claims
//   FetchX509SVID    UNIMPLEMENTED
// Control (HTTP POST on 127.0.0.1:control_port, JSON reply):
//   /rotate                 a new signing key replaces the old one; pushed to every stream
//   /push?mode=M            same (the current bundles again), malformed (JWKS that is not JSON),
//                           too_many (201 trust domains), huge (a JWKS over 4 MiB), empty (no bundles)
//   /end, /reset            end every bundle stream cleanly, or with RST_STREAM
//   /restart?rotate=1       stop the gRPC server (dropping every connection) and serve again on
//                           the same socket, with a new signing key when rotate=1
//   /churn?ms=N             push a changed set (spiffe_sequence + 1) every N ms; 0 stops
//   /fail?code=C&count=N&message=T&method=M   the next N calls (of method M, default any) fail
//                           with gRPC status C; C=7 with "no identity issued" is what an agent
//                           answers before the workload is attested; /fail?clear=1 disarms all
//   /delay?ms=N             wait N ms before answering each later call
//   /stats (GET)            {"streams": open bundle streams, "calls": {method: count}}
//   /jwks (GET)             the current JWT key as a JWKS (without use), for relying parties
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { SignJWT, createLocalJWKSet, exportJWK, jwtVerify } from 'jose';

const socket = process.argv[2];
if (!socket) {
  console.error('usage: workload_server.mjs SOCKET_PATH [--tcp]');
  process.exit(2);
}
const withTcp = process.argv.includes('--tcp');

const here = path.dirname(fileURLToPath(import.meta.url));
const definition = protoLoader.loadSync(path.join(here, 'workload.proto'), { keepCase: true, defaults: true });
const { SpiffeWorkloadAPI } = grpc.loadPackageDefinition(definition);

let generation = 0;
let signing;
let sequence = 0;
async function newKey() {
  generation += 1;
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  signing = { kid: `k${generation}`, pair, jwk: { ...(await exportJWK(pair.publicKey)), kid: `k${generation}`, use: 'jwt-svid' } };
  sequence += 1;
}
await newKey();
const federated = { ...(await exportJWK(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)), kid: 'fed-1', use: 'jwt-svid' };

const jwks = () => ({ keys: [signing.jwk], spiffe_sequence: sequence, spiffe_refresh_hint: 60 });
const bundles = () => ({
  'spiffe://example.org': Buffer.from(JSON.stringify(jwks())),
  'spiffe://federated.org': Buffer.from(JSON.stringify({ keys: [federated] })),
});

const streams = new Set();
const calls = {};
const faults = [];  // {code, message, count, method}
let delayMs = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The fault for this call, if one is armed; counts it down.
function takeFault(method) {
  const f = faults.find((x) => x.count > 0 && (!x.method || x.method === method));
  if (!f) return null;
  f.count -= 1;
  return { code: f.code, details: f.message };
}

// Common admission: counts, delay, the security header, armed faults. Returns an error or null.
async function admit(call, method) {
  calls[method] = (calls[method] || 0) + 1;
  if (delayMs) await sleep(delayMs);
  if (call.metadata.get('workload.spiffe.io')[0] !== 'true') {
    return { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' };
  }
  return takeFault(method);
}

async function svid(sub, audience) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub, aud: audience, iat: now, exp: now + 300 })
    .setProtectedHeader({ alg: 'ES256', kid: signing.kid, typ: 'JWT' }).sign(signing.pair.privateKey);
}

// google.protobuf.Value, whose bundled definition keeps protobuf.js's camelCase names.
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}
function toStruct(o) {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])) };
}

// The underlying HTTP/2 stream of a call, for RST_STREAM.
function h2stream(call) {
  let c = call.call;
  for (let i = 0; c && i < 16; i++, c = c.nextCall) {
    if (c.stream && typeof c.stream.close === 'function') return c.stream;
  }
  return undefined;
}

const impl = {
  async FetchJWTBundles(call) {
    const err = await admit(call, 'FetchJWTBundles');
    if (err) return call.emit('error', err);
    streams.add(call);
    const forget = () => streams.delete(call);
    call.on('cancelled', forget);
    call.on('close', forget);
    call.on('finish', forget);
    call.write({ bundles: bundles() });
  },
  async FetchJWTSVID(call, callback) {
    const err = await admit(call, 'FetchJWTSVID');
    if (err) return callback(err);
    const { audience, spiffe_id: requested } = call.request;
    if (!audience || audience.length === 0) return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'audience must be specified' });
    const ids = [['spiffe://example.org/workload', 'primary'], ['spiffe://example.org/other', 'secondary'],
      ['spiffe://example.org/workload', 'primary']];
    const chosen = requested ? ids.filter(([id]) => id === requested).slice(0, 1) : ids;
    if (chosen.length === 0) return callback({ code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' });
    const svids = await Promise.all(chosen.map(async ([id, hint]) => ({ spiffe_id: id, svid: await svid(id, audience), hint })));
    callback(null, { svids });
  },
  async ValidateJWTSVID(call, callback) {
    const err = await admit(call, 'ValidateJWTSVID');
    if (err) return callback(err);
    const { audience, svid: token } = call.request;
    if (!audience) return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'audience must be specified' });
    try {
      const { use, ...key } = signing.jwk;  // jose's key selection knows use "sig", not "jwt-svid"
      const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: [key] }), { audience });
      callback(null, { spiffe_id: payload.sub, claims: toStruct(payload) });
    } catch (e) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `unable to validate JWT-SVID: ${e.code || e.message}` });
    }
  },
  async FetchX509SVID(call) {
    call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'X.509-SVIDs are not served here' });
  },
};

let server;
const bind = (address) => new Promise((resolve, reject) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(),
  (e, port) => (e ? reject(e) : resolve(port))));
async function serve() {
  if (existsSync(socket)) unlinkSync(socket);
  server = new grpc.Server();
  server.addService(SpiffeWorkloadAPI.service, impl);
  await bind(`unix://${socket}`);
}
await serve();
const tcpPort = withTcp ? await bind('127.0.0.1:0') : undefined;

let churn;
function push(message) {
  for (const call of streams) call.write(message);
}

const control = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://control');
  const reply = (body, status = 200) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const q = (name, fallback) => url.searchParams.get(name) ?? fallback;
  switch (url.pathname) {
    case '/rotate': {
      await newKey();
      const pushed = process.hrtime.bigint();  // CLOCK_MONOTONIC, as the client's steady clock
      push({ bundles: bundles() });
      return reply({ kid: signing.kid, streams: streams.size, pushed_ns: pushed.toString() });
    }
    case '/churn': {
      clearInterval(churn);
      const ms = Number(q('ms', '0'));
      if (ms > 0) churn = setInterval(() => { sequence += 1; push({ bundles: bundles() }); }, ms);
      return reply({ churn_ms: ms });
    }
    case '/push': {
      const mode = q('mode', 'same');
      if (mode === 'same') push({ bundles: bundles() });
      else if (mode === 'malformed') push({ bundles: { ...bundles(), 'spiffe://example.org': Buffer.from('{"keys": [') } });
      else if (mode === 'too_many') {
        const many = bundles();
        for (let i = 0; i < 199; i++) many[`spiffe://td${i}.example`] = Buffer.from('{"keys":[]}');
        push({ bundles: many });
      } else if (mode === 'huge') {
        push({ bundles: { ...bundles(), 'spiffe://example.org': Buffer.from(JSON.stringify({ ...jwks(), pad: 'x'.repeat(4 << 20) })) } });
      } else if (mode === 'empty') push({ bundles: {} });
      else return reply({ error: `unknown mode ${mode}` }, 400);
      return reply({ streams: streams.size });
    }
    case '/end': {
      const n = streams.size;
      for (const call of [...streams]) call.end();
      streams.clear();
      return reply({ ended: n });
    }
    case '/reset': {
      const n = streams.size;
      for (const call of [...streams]) h2stream(call)?.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      streams.clear();
      return reply({ reset: n });
    }
    case '/restart':
      server.forceShutdown();
      streams.clear();
      if (q('rotate', '0') === '1') await newKey();
      await serve();
      return reply({ kid: signing.kid });
    case '/fail':
      if (q('clear', '0') === '1') {
        faults.length = 0;
        return reply({ armed: 0 });
      }
      faults.push({ code: Number(q('code', '14')), message: q('message', ''), count: Number(q('count', '1')), method: q('method', '') });
      return reply({ armed: faults.length });
    case '/delay':
      delayMs = Number(q('ms', '0'));
      return reply({ delay_ms: delayMs });
    case '/jwks': {  // the trust domain's JWT keys for relying parties, as OIDC discovery serves them
      const { use, ...key } = signing.jwk;
      return reply({ keys: [key] });
    }
    case '/stats':
      return reply({ streams: streams.size, calls, kid: signing.kid });
    default:
      return reply({ error: 'not found' }, 404);
  }
});
control.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ socket, control_port: control.address().port, tcp_port: tcpPort, kid: signing.kid }));
});
