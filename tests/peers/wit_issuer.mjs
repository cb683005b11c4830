// WIT-SVIDs for the Workload API test peer (workload_server.mjs): the WIT issuers of example.org
// and federated.org, their WIT bundles, the WIT-SVIDs the peer serves, single WIT-SVIDs with
// faults for tests (WitWorld), and the FetchWITSVID and FetchWITBundles methods with their
// streams and /wit/* control routes (WitService; documented in workload_server.mjs). Signed with
// npm jose, keys made and exported with node:crypto.
//
// A WIT-SVID is a compact JWS: header {alg: "ES256", kid: the issuer key's kid, typ: "wit+jwt"},
// claims {sub: the SPIFFE ID, iss: "spiffe://<trust domain>", iat, jti (a UUID), exp: iat + ttl,
// cnf: {jwk: the workload's public key with alg}}; never aud. The workload's key goes with it as
// a private JWK in JSON text (EC: kty crv x y d alg; RSA: kty n e d p q dp dq qi alg).
// Workload key kinds: ec256 (alg ES256), ec384 (ES384), rsa2048 (RS256). Issuer keys are EC P-256
// (ES256) with kid "wit-<12 hex>"; each WIT bundle is a JWKS whose keys carry use "wit-svid",
// kid and alg; example.org's also holds one key with use "jwt-svid" (kid "jwt-<12 hex>", listed
// first), which a client must skip.
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';

import grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';

const kinds = {
  ec256: { alg: 'ES256', make: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
  ec384: { alg: 'ES384', make: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }) },
  rsa2048: { alg: 'RS256', make: () => generateKeyPairSync('rsa', { modulusLength: 2048 }) },
};
export const witKeyKinds = Object.keys(kinds);

// Faults of WitWorld.mint (any subset):
//   aud               an aud claim ("spiffe://<td>/relying-party")
//   no_kid            no kid in the header
//   typ               typ "JWT" instead of "wit+jwt"
//   no_cnf            no cnf claim
//   cnf_alg_mismatch  cnf.jwk is an EC P-256 key with alg RS256 (the private JWK says RS256 too)
//   no_exp            no exp claim
//   nbf_future        nbf = now + 600
//   expired           iat = now - 900, exp = now - 600
//   wrong_use         signed by example.org's "jwt-svid" key (whose kid the WIT bundle lists)
//   key_mismatch      the private key handed back is not the one in cnf.jwk
export const witFaults = ['aud', 'no_kid', 'typ', 'no_cnf', 'cnf_alg_mismatch', 'no_exp', 'nbf_future', 'expired',
  'wrong_use', 'key_mismatch'];

// A workload key pair: `cnf` its public JWK, `key` its private JWK as JSON text, both with `alg`.
function workloadKey(kind, alg = kinds[kind].alg) {
  const { publicKey, privateKey } = kinds[kind].make();
  return { cnf: { ...publicKey.export({ format: 'jwk' }), alg },
    key: JSON.stringify({ ...privateKey.export({ format: 'jwk' }), alg }) };
}

// An EC P-256 signing key for a bundle: {kid, privateKey, jwk: public JWK with use, kid, alg}.
function issuerKey(use, prefix) {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = prefix + randomBytes(6).toString('hex');
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), use, kid, alg: 'ES256' } };
}

// The WIT-SVIDs served on the stream, in this order.
const served = [['spiffe://example.org/workload', 'primary'], ['spiffe://example.org/other', 'secondary']];

export class WitWorld {
  constructor() {
    this.issuers = [issuerKey('wit-svid', 'wit-')];  // example.org's WIT keys, the newest (last) signs
    this.jwtKey = issuerKey('jwt-svid', 'jwt-');      // in example.org's WIT JWKS, not a WIT key
    this.federated = issuerKey('wit-svid', 'wit-');
    this.sequence = 1;    // example.org's spiffe_sequence, + 1 per rotation
    this.serial = 0;      // + 1 per set of served WIT-SVIDs
    this.ttl = 300;       // seconds, for WIT-SVIDs issued from now on
    this.kind = 'ec256';  // workload key kind for WIT-SVIDs issued from now on
    this.svids = [];      // WITSVID messages: {spiffe_id, wit_svid, wit_svid_key, hint}
  }

  get kid() {
    return this.issuers.at(-1).kid;
  }

  // The WIT bundle of 'example.org' or 'federated.org' as a JWKS object.
  jwks(td) {
    if (td === 'federated.org') return { keys: [this.federated.jwk], spiffe_sequence: 1 };
    return { keys: [this.jwtKey.jwk, ...this.issuers.map((i) => i.jwk)], spiffe_sequence: this.sequence,
      spiffe_refresh_hint: 60 };
  }

  // WITBundlesResponse.bundles: trust domain ID -> JWKS text.
  bundles() {
    return Object.fromEntries(['example.org', 'federated.org'].map((td) => [`spiffe://${td}`, JSON.stringify(this.jwks(td))]));
  }

  has(id) {
    return this.svids.some((s) => s.spiffe_id === id);
  }

  // The WITSVIDResponse for a stream that asked for `requested` ('' for all), in a /wit/push mode:
  // same, malformed (the first SVID's wit_svid is "not a token"), empty (no SVIDs).
  message(requested = '', mode = 'same') {
    if (mode === 'empty') return { svids: [] };
    const svids = this.svids.filter((s) => !requested || s.spiffe_id === requested).map((s) => ({ ...s }));
    if (mode === 'malformed' && svids.length > 0) svids[0].wit_svid = 'not a token';
    return { svids };
  }

  // New workload keys and WIT-SVIDs for the served IDs, signed by the newest example.org key.
  async renew() {
    this.svids = await Promise.all(served.map(async ([id, hint]) => {
      const { wit, key } = await this.mint({ id });
      return { spiffe_id: id, wit_svid: wit, wit_svid_key: key, hint };
    }));
    this.serial += 1;
  }

  // A new example.org issuer key (alone in the bundle unless keepOld), then new WIT-SVIDs.
  async rotate(keepOld = false) {
    const next = issuerKey('wit-svid', 'wit-');
    this.issuers = keepOld ? [...this.issuers, next] : [next];
    this.sequence += 1;
    await this.renew();
  }

  // One WIT-SVID for `id`, signed by td's issuer: {wit: token, key: private JWK text}.
  async mint({ id, td = 'example.org', ttl = this.ttl, kind = this.kind, faults = [] }) {
    const has = (f) => faults.includes(f);
    let signer = td === 'federated.org' ? this.federated : this.issuers.at(-1);
    if (has('wrong_use')) signer = this.jwtKey;
    const bound = has('cnf_alg_mismatch') ? workloadKey('ec256', 'RS256') : workloadKey(kind);
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: id, iss: `spiffe://${td}`, iat: now, jti: randomUUID(), exp: now + ttl };
    if (has('expired')) Object.assign(claims, { iat: now - 900, exp: now - 600 });
    if (has('no_exp')) delete claims.exp;
    if (has('nbf_future')) claims.nbf = now + 600;
    if (has('aud')) claims.aud = `spiffe://${td}/relying-party`;
    if (!has('no_cnf')) claims.cnf = { jwk: bound.cnf };
    const header = { alg: 'ES256', typ: has('typ') ? 'JWT' : 'wit+jwt' };
    if (!has('no_kid')) header.kid = signer.kid;
    const wit = await new SignJWT(claims).setProtectedHeader(header).sign(signer.privateKey);
    return { wit, key: has('key_mismatch') ? workloadKey(kind).key : bound.key };
  }
}

// The WIT methods and routes of the peer. `admit(call, method)` is the peer's common admission
// (counts, delay, security header, armed faults), `track(set, call)` keeps a stream in a set until
// it ends, `calls` the per-method counts.
export class WitService {
  constructor(world, { admit, track, calls }) {
    Object.assign(this, { world, admit, track, calls });
    this.mode = 'normal';      // or unimplemented, failed_precondition: an agent without the WIT profile
    this.svidStreams = new Set();    // FetchWITSVID calls, each with .wit = the requested ID ('' for all)
    this.bundleStreams = new Set();  // FetchWITBundles calls
  }

  refusal(method, mode = this.mode) {
    return mode === 'unimplemented'
      ? { code: grpc.status.UNIMPLEMENTED, details: `The server does not implement the method /SpiffeWorkloadAPI/${method}` }
      : { code: grpc.status.FAILED_PRECONDITION, details: 'WIT-SVID profile not enabled' };
  }

  // While the mode is not normal, the call counts and is refused at once.
  async admitWit(call, method) {
    if (this.mode === 'normal') return this.admit(call, method);
    this.calls[method] = (this.calls[method] || 0) + 1;
    return this.refusal(method);
  }

  methods() {
    return {
      FetchWITSVID: async (call) => {
        const err = await this.admitWit(call, 'FetchWITSVID');
        if (err) return call.emit('error', err);
        const requested = call.request.spiffe_id;
        if (requested && !this.world.has(requested)) {
          return call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' });
        }
        call.wit = requested;
        this.track(this.svidStreams, call);
        call.write(this.world.message(requested));
      },
      FetchWITBundles: async (call) => {
        const err = await this.admitWit(call, 'FetchWITBundles');
        if (err) return call.emit('error', err);
        this.track(this.bundleStreams, call);
        call.write({ bundles: this.world.bundles() });
      },
    };
  }

  // Every open WIT stream, forgotten here (for /end, /reset, /restart).
  take() {
    const open = [...this.svidStreams, ...this.bundleStreams];
    this.svidStreams.clear();
    this.bundleStreams.clear();
    return open;
  }

  push(mode = 'same') {
    for (const call of this.svidStreams) call.write(this.world.message(call.wit, mode));
  }

  pushBundles() {
    for (const call of this.bundleStreams) call.write({ bundles: this.world.bundles() });
  }

  stats() {
    return { wit_streams: this.svidStreams.size, wit_bundle_streams: this.bundleStreams.size, wit_serial: this.world.serial,
      wit_kid: this.world.kid, wit_mode: this.mode };
  }

  // A /wit/* control route: {body, status} or undefined when `pathname` is none of them.
  async control(pathname, q) {
    const ok = (body) => ({ body, status: 200 });
    const bad = (error) => ({ body: { error }, status: 400 });
    const world = this.world;
    switch (pathname) {
      case '/wit/mode': {
        const mode = q('m', 'normal');
        if (!['normal', 'unimplemented', 'failed_precondition'].includes(mode)) return bad(`unknown mode ${mode}`);
        this.mode = mode;
        let ended = 0;
        if (mode !== 'normal') {
          for (const [set, method] of [[this.svidStreams, 'FetchWITSVID'], [this.bundleStreams, 'FetchWITBundles']]) {
            for (const call of set) call.emit('error', this.refusal(method));
            ended += set.size;
            set.clear();
          }
        }
        return ok({ mode, ended });
      }
      case '/wit/renew': {
        await world.renew();
        const pushed = process.hrtime.bigint();  // CLOCK_MONOTONIC, as the client's steady clock
        this.push();
        return ok({ serial: world.serial, streams: this.svidStreams.size, pushed_ns: pushed.toString() });
      }
      case '/wit/rotate': {
        await world.rotate(q('keep_old', '0') === '1');
        const pushed = process.hrtime.bigint();
        this.pushBundles();
        this.push();
        return ok({ kid: world.kid, sequence: world.sequence, serial: world.serial, streams: this.svidStreams.size,
          bundle_streams: this.bundleStreams.size, pushed_ns: pushed.toString() });
      }
      case '/wit/ttl': {
        const ttl = Number(q('s', ''));
        if (!Number.isInteger(ttl) || ttl <= 0) return bad('needs s, a positive whole number of seconds');
        world.ttl = ttl;
        return ok({ ttl_s: ttl });
      }
      case '/wit/key': {
        const key = q('k', '');
        if (!witKeyKinds.includes(key)) return bad(`unknown key ${key}`);
        world.kind = key;
        return ok({ key });
      }
      case '/wit/push': {
        const mode = q('mode', 'same');
        if (!['same', 'malformed', 'empty'].includes(mode)) return bad(`unknown mode ${mode}`);
        this.push(mode);
        return ok({ streams: this.svidStreams.size });
      }
      case '/wit/issue': {
        const [id, td, kind, ttl] = [q('id', ''), q('td', 'example.org'), q('key', world.kind), Number(q('ttl', String(world.ttl)))];
        const faults = q('fault', '').split(',').filter(Boolean);
        if (!id || !['example.org', 'federated.org'].includes(td) || !witKeyKinds.includes(kind) || !Number.isInteger(ttl)
          || faults.some((f) => !witFaults.includes(f))) {
          return bad(`needs id, td example.org|federated.org, key ${witKeyKinds.join('|')}, a whole ttl, `
            + `fault among ${witFaults.join(',')}`);
        }
        return ok(await world.mint({ id, td, ttl, kind, faults }));
      }
      case '/wit/jwks':
        return ok({ 'spiffe://example.org': world.jwks('example.org'), 'spiffe://federated.org': world.jwks('federated.org') });
      default:
        return undefined;
    }
  }
}
