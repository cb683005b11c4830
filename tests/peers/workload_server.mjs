// A SPIFFE Workload API server (@grpc/grpc-js, workload.proto) on a unix socket, for the trust
// domain example.org, signing ES256 JWT-SVIDs and WIT-SVIDs (wit_issuer.mjs) with npm jose and
// serving X.509-SVIDs made with the openssl tool, and a control port for faults.
//   node workload_server.mjs SOCKET_PATH [--tcp]
// A stale socket file is removed first, so a peer can be restarted on the same path. Prints one
// JSON line when ready: {"socket":PATH, "control_port":N, "tcp_port":N (with --tcp), "kid":KID,
// "wit_kid":KID}
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
//   FetchX509SVID    a stream: the current X.509-SVIDs at once and after every X.509 change:
//                    spiffe://example.org/workload (hint "primary") and spiffe://example.org/other
//                    ("secondary"), each x509_svid = leaf DER + intermediate DER, x509_svid_key =
//                    PKCS#8 DER, bundle = the example.org root(s) DER; federated_bundles =
//                    {"spiffe://federated.org": its root DER}
//   FetchX509Bundles a stream: {"spiffe://example.org": root(s) DER, "spiffe://federated.org": root
//                    DER} at once and after every X.509 change
//   FetchWITSVID     a stream: the current WIT-SVIDs at once and after every /wit/renew or
//                    /wit/rotate: spiffe://example.org/workload (hint "primary") and spiffe://
//                    example.org/other ("secondary"), each with a workload key of its own
//                    (wit_svid_key, a private JWK in JSON text; cnf.jwk its public half), exp in
//                    300 s; with spiffe_id set, that one only (another ID: PERMISSION_DENIED "no
//                    identity issued", as FetchJWTSVID). Claims and keys: see wit_issuer.mjs
//   FetchWITBundles  a stream: {"spiffe://example.org": JWKS text (a "jwt-svid" key first, then the
//                    "wit-svid" key(s); spiffe_sequence, spiffe_refresh_hint), "spiffe://
//                    federated.org": JWKS text (its "wit-svid" key)} at once and after /wit/rotate
//   (while /wit/mode is not normal, both WIT methods answer UNIMPLEMENTED or FAILED_PRECONDITION
//   at once: counted in calls, but no header check, no delay, no armed fault)
// X.509 world, made at start-up: example.org root CA -> intermediate CA (EC P-256, 2 days, URI SAN
// spiffe://example.org) -> leaves (EC P-256 by default, 1 day, URI SAN the ID, EKU serverAuth and
// clientAuth); federated.org root CA. Each openssl run gets a scratch directory of its own, removed
// at once (the harness ends peers with SIGKILL, which no exit hook survives).
// Control (HTTP POST on 127.0.0.1:control_port, JSON reply):
//   /rotate                 a new signing key replaces the old one; pushed to every stream
//   /push?mode=M            same (the current bundles again), malformed (JWKS that is not JSON),
//                           too_many (201 trust domains), huge (a JWKS over 4 MiB), empty (no bundles)
//   /end, /reset            end every stream (JWT, X.509 and WIT bundle and SVID streams) cleanly,
//                           or with RST_STREAM: {"ended"|"reset": JWT streams,
//                           "x509_ended"|"x509_reset": X.509 streams, "wit_ended"|"wit_reset": WIT
//                           streams}
//   /restart?rotate=1       stop the gRPC server (dropping every connection) and serve again on
//                           the same socket, with a new signing key and new X.509 leaves when
//                           rotate=1 (else the same X.509 world; the WIT world is kept either
//                           way): {kid, x509_serial}
//   /churn?ms=N             push a changed set (spiffe_sequence + 1) every N ms; 0 stops
//   /fail?code=C&count=N&message=T&method=M   the next N calls (of method M, default any) fail
//                           with gRPC status C; C=7 with "no identity issued" is what an agent
//                           answers before the workload is attested; /fail?clear=1 disarms all
//   /delay?ms=N             wait N ms before answering each later call
//   /reuse_svids?on=1       FetchJWTSVID hands out the token signed last for the same subject and
//                           audiences (until the key rotates) instead of signing anew: for
//                           benchmarks of the clients rather than of this peer's signing
//   /stats (GET)            {"streams": open JWT bundle streams, "x509_streams": open X.509
//                           streams, "x509_serial": N, "calls": {method: count}, "kid": KID,
//                           "connections": client connections calls came on (distinct over TCP
//                           only: a unix socket's peers all read the same), "wit_streams": open
//                           FetchWITSVID streams, "wit_bundle_streams": open FetchWITBundles
//                           streams, "wit_serial": N, "wit_kid": KID, "wit_mode": M}
//   /jwks (GET)             the current JWT key as a JWKS (without use), for relying parties
//   /x509/rotate?key=K      new leaf keys (K: ec256, ec384, rsa2048, ed25519; default the current
//                           kind, ec256 at start) and certificates for both SVIDs, pushed to every
//                           X.509 stream: {serial, streams: X.509 streams, pushed_ns}
//     &authority=1          ...and first a new example.org root and intermediate, whose root alone
//                           is the bundle; with &keep_old=1 the new root joins the old ones
//   /x509/push?mode=M       to every X.509 stream: same (the current messages again), malformed
//                           (the first SVID's x509_svid, or the example.org bundle, is 'not a
//                           certificate'), empty (no SVIDs, no bundles), huge (the example.org
//                           bundle followed by 5 MiB of random bytes), too_many (federated.org and
//                           201 more, spiffe://tdN.example, each its root): {streams}
//   /x509/issue?id=ID&td=T&key=K  a leaf for any ID (not served), signed by T's CA (example.org,
//                           the default: its intermediate; federated.org: its root):
//                           {chain_pem: leaf + intermediate (if any), key_pem: PKCS#8}
//   /x509/ca (GET)          {example_root_pem (the newest), example_intermediate_pem,
//                           federated_root_pem}
//   /wit/mode?m=M           normal (serve), unimplemented (UNIMPLEMENTED, 12) or
//                           failed_precondition (FAILED_PRECONDITION, 9): an agent without the WIT
//                           profile; leaving normal ends every open WIT stream with that status:
//                           {mode, ended: WIT streams ended}
//   /wit/renew              new workload keys and WIT-SVIDs (same issuer key), pushed to every WIT
//                           SVID stream: {serial, streams: WIT SVID streams, pushed_ns}
//   /wit/rotate?keep_old=1  a new example.org issuer key (the WIT bundle then holds it alone, or
//                           with the old ones when keep_old=1; spiffe_sequence + 1) and new
//                           WIT-SVIDs signed by it, pushed to every WIT bundle stream and then to
//                           every WIT SVID stream: {kid, sequence, serial, streams, bundle_streams,
//                           pushed_ns}
//   /wit/ttl?s=N            lifetime of WIT-SVIDs issued from now on (default 300): {ttl_s}
//   /wit/key?k=K            workload key kind of WIT-SVIDs issued from now on: ec256 (cnf alg
//                           ES256, the start), ec384 (ES384), rsa2048 (RS256): {key}
//   /wit/push?mode=M        to every WIT SVID stream: same (the current message again), malformed
//                           (the first SVID's wit_svid is "not a token"), empty (no SVIDs): {streams}
//   /wit/issue?id=ID&td=T&ttl=S&key=K&fault=F  a WIT-SVID for any ID (not served), signed by T's
//                           issuer (example.org, the default, or federated.org), ttl and key kind
//                           defaulting to the current ones; F a comma list of faults (aud, no_kid,
//                           typ, no_cnf, cnf_alg_mismatch, no_exp, nbf_future, expired, wrong_use,
//                           key_mismatch; see wit_issuer.mjs): {wit: token, key: private JWK text}
//   /wit/jwks (GET)         the current WIT bundles as objects: {"spiffe://example.org": JWKS,
//                           "spiffe://federated.org": JWKS}
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { SignJWT, createLocalJWKSet, exportJWK, jwtVerify } from 'jose';

import { WitService, WitWorld } from './wit_issuer.mjs';

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

// X.509: one openssl run per certificate (a new key, signed by `issuer` {cert, key} PEM, or
// self-signed), in a scratch directory of its own. Returns {cert, key: PKCS#8 PEM, der, keyDer}.
const keyArgs = {
  ec256: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  ec384: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  rsa2048: ['-newkey', 'rsa:2048'],
  ed25519: ['-newkey', 'ed25519'],
};
const opensslConf = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = @san
[leaf]
subjectAltName = @san
basicConstraints = critical,CA:FALSE
keyUsage = critical,$ENV::KU
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[san]
URI.1 = $ENV::SAN
`;
function certify({ subj, san, leaf = false, key = 'ec256', issuer }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'awaken-x509-'));
  const f = (name) => path.join(dir, name);
  try {
    writeFileSync(f('x509.cnf'), opensslConf);
    const args = ['req', '-config', f('x509.cnf'), '-extensions', leaf ? 'leaf' : 'ca', ...keyArgs[key], '-nodes',
      '-keyout', f('key.pem'), '-out', f('cert.pem'), '-days', leaf ? '1' : '2', '-subj', subj];
    if (issuer) {
      writeFileSync(f('ca.pem'), issuer.cert);
      writeFileSync(f('ca.key'), issuer.key);
      args.push('-CA', f('ca.pem'), '-CAkey', f('ca.key'));
    } else args.push('-x509');
    const KU = key === 'rsa2048' ? 'digitalSignature,keyEncipherment' : 'digitalSignature';
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SAN: san, KU } });
    const cert = readFileSync(f('cert.pem'), 'utf8');
    const pkey = createPrivateKey(readFileSync(f('key.pem')));
    return { cert, der: new X509Certificate(cert).raw, key: pkey.export({ type: 'pkcs8', format: 'pem' }),
      keyDer: pkey.export({ type: 'pkcs8', format: 'der' }) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const x509 = { roots: [], intermediate: null, leaves: [], key: 'ec256', serial: 0 };
function newAuthority(keepOld) {
  const root = certify({ subj: '/O=awaken test/CN=example.org root', san: 'spiffe://example.org' });
  x509.intermediate = certify({ subj: '/O=awaken test/CN=example.org intermediate', san: 'spiffe://example.org', issuer: root });
  x509.roots = keepOld ? [...x509.roots, root] : [root];
}
const leafFor = (id, td, key) => certify({ subj: '/O=awaken test', san: id, leaf: true, key,
  issuer: td === 'federated.org' ? x509.federated : x509.intermediate });
function newLeaves(key = x509.key) {
  x509.key = key;
  x509.leaves = [['spiffe://example.org/workload', 'primary'], ['spiffe://example.org/other', 'secondary']]
    .map(([id, hint]) => ({ id, hint, ...leafFor(id, 'example.org', key) }));
  x509.serial += 1;
}
x509.federated = certify({ subj: '/O=awaken test/CN=federated.org root', san: 'spiffe://federated.org' });
newAuthority(false);
newLeaves();

// The X.509 messages for a stream kind ('svid' or 'bundles') and a /x509/push mode.
function x509Message(kind, mode = 'same', pad = undefined) {
  if (mode === 'empty') return kind === 'svid' ? { svids: [] } : { bundles: {} };
  let bundle = Buffer.concat(x509.roots.map((r) => r.der));
  if (mode === 'huge') bundle = Buffer.concat([bundle, pad]);
  if (mode === 'malformed' && kind === 'bundles') bundle = Buffer.from('not a certificate');
  const federatedBundles = { 'spiffe://federated.org': x509.federated.der };
  if (mode === 'too_many') for (let i = 0; i < 201; i++) federatedBundles[`spiffe://td${i}.example`] = x509.federated.der;
  if (kind === 'bundles') return { crl: [], bundles: { 'spiffe://example.org': bundle, ...federatedBundles } };
  const svids = x509.leaves.map((l) => ({ spiffe_id: l.id, x509_svid: Buffer.concat([l.der, x509.intermediate.der]),
    x509_svid_key: l.keyDer, bundle, hint: l.hint }));
  if (mode === 'malformed') svids[0].x509_svid = Buffer.from('not a certificate');
  return { svids, crl: [], federated_bundles: federatedBundles };
}

const streams = new Set();
const x509Streams = new Set();  // FetchX509SVID and FetchX509Bundles calls, each with .x509 = its kind
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
const peers = new Set();  // the client ends of the connections calls came on (distinct over TCP)
async function admit(call, method) {
  calls[method] = (calls[method] || 0) + 1;
  peers.add(call.getPeer());
  if (delayMs) await sleep(delayMs);
  if (call.metadata.get('workload.spiffe.io')[0] !== 'true') {
    return { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' };
  }
  return takeFault(method);
}

let reuseSvids = false;
const signed = new Map();  // `${kid} ${sub} ${audience}` -> token, when reuseSvids
async function svid(sub, audience) {
  const key = `${signing.kid} ${sub} ${audience}`;
  if (reuseSvids && signed.has(key)) return signed.get(key);
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ sub, aud: audience, iat: now, exp: now + 300 })
    .setProtectedHeader({ alg: 'ES256', kid: signing.kid, typ: 'JWT' }).sign(signing.pair.privateKey);
  if (reuseSvids) signed.set(key, token);
  return token;
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

// Keeps a server stream in `set` until it ends.
function track(set, call) {
  set.add(call);
  const forget = () => set.delete(call);
  call.on('cancelled', forget);
  call.on('close', forget);
  call.on('finish', forget);
}
async function x509Stream(call, method, kind) {
  const err = await admit(call, method);
  if (err) return call.emit('error', err);
  call.x509 = kind;
  track(x509Streams, call);
  call.write(x509Message(kind));
}

const impl = {
  async FetchJWTBundles(call) {
    const err = await admit(call, 'FetchJWTBundles');
    if (err) return call.emit('error', err);
    track(streams, call);
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
  FetchX509SVID: (call) => x509Stream(call, 'FetchX509SVID', 'svid'),
  FetchX509Bundles: (call) => x509Stream(call, 'FetchX509Bundles', 'bundles'),
};
const witWorld = new WitWorld();
await witWorld.renew();
const wit = new WitService(witWorld, { admit, track, calls });
Object.assign(impl, wit.methods());

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
function pushX509(mode = 'same') {
  const pad = mode === 'huge' ? randomBytes(5 << 20) : undefined;
  const messages = {};
  for (const call of x509Streams) call.write(messages[call.x509] ??= x509Message(call.x509, mode, pad));
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
      const [n, m, witCalls] = [streams.size, x509Streams.size, wit.take()];
      for (const call of [...streams, ...x509Streams, ...witCalls]) call.end();
      streams.clear();
      x509Streams.clear();
      return reply({ ended: n, x509_ended: m, wit_ended: witCalls.length });
    }
    case '/reset': {
      const [n, m, witCalls] = [streams.size, x509Streams.size, wit.take()];
      for (const call of [...streams, ...x509Streams, ...witCalls]) h2stream(call)?.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      streams.clear();
      x509Streams.clear();
      return reply({ reset: n, x509_reset: m, wit_reset: witCalls.length });
    }
    case '/restart':
      server.forceShutdown();
      streams.clear();
      x509Streams.clear();
      wit.take();
      if (q('rotate', '0') === '1') {
        await newKey();
        newLeaves();
      }
      await serve();
      return reply({ kid: signing.kid, x509_serial: x509.serial });
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
    case '/reuse_svids':
      reuseSvids = q('on', '0') === '1';
      signed.clear();
      return reply({ reuse_svids: reuseSvids });
    case '/jwks': {  // the trust domain's JWT keys for relying parties, as OIDC discovery serves them
      const { use, ...key } = signing.jwk;
      return reply({ keys: [key] });
    }
    case '/stats':
      return reply({ streams: streams.size, x509_streams: x509Streams.size, x509_serial: x509.serial, calls, kid: signing.kid,
        connections: peers.size, ...wit.stats() });
    case '/x509/rotate': {
      const key = q('key', x509.key);
      if (!keyArgs[key]) return reply({ error: `unknown key ${key}` }, 400);
      if (q('authority', '0') === '1') newAuthority(q('keep_old', '0') === '1');
      newLeaves(key);
      const pushed = process.hrtime.bigint();
      pushX509();
      return reply({ serial: x509.serial, streams: x509Streams.size, pushed_ns: pushed.toString() });
    }
    case '/x509/push': {
      const mode = q('mode', 'same');
      if (!['same', 'malformed', 'empty', 'huge', 'too_many'].includes(mode)) return reply({ error: `unknown mode ${mode}` }, 400);
      pushX509(mode);
      return reply({ streams: x509Streams.size });
    }
    case '/x509/issue': {
      const [id, td, key] = [q('id', ''), q('td', 'example.org'), q('key', 'ec256')];
      if (!id || !['example.org', 'federated.org'].includes(td) || !keyArgs[key]) {
        return reply({ error: 'needs id, td example.org|federated.org, key ec256|ec384|rsa2048|ed25519' }, 400);
      }
      try {
        const leaf = leafFor(id, td, key);
        return reply({ chain_pem: leaf.cert + (td === 'example.org' ? x509.intermediate.cert : ''), key_pem: leaf.key });
      } catch (e) {
        return reply({ error: `openssl: ${e.stderr?.toString().trim() || e.message}` }, 500);
      }
    }
    case '/x509/ca':
      return reply({ example_root_pem: x509.roots.at(-1).cert, example_intermediate_pem: x509.intermediate.cert,
        federated_root_pem: x509.federated.cert });
    default: {
      const routed = await wit.control(url.pathname, q);
      return routed ? reply(routed.body, routed.status) : reply({ error: 'not found' }, 404);
    }
  }
});
control.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ socket, control_port: control.address().port, tcp_port: tcpPort, kid: signing.kid,
    wit_kid: witWorld.kid }));
});
