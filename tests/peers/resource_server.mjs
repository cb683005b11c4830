// A resource server that accepts DPoP-bound JWT access tokens (RFC 9449) on plain HTTP at
// 127.0.0.1, for the access tokens oidc_server.mjs --dpop issues for https://api.awaken.test/...
//   node resource_server.mjs --jwks JWKS_URI [--issuer ISSUER]
// Prints one JSON line when ready: {"url":"http://127.0.0.1:PORT"}.
// Any request (any method) to a path under /api/ needs `Authorization: DPoP TOKEN` and exactly one
// `DPoP: PROOF` header. TOKEN must be a JWT that verifies with the keys at JWKS_URI (fetched again
// when a kid is unknown), is not expired, has iss = ISSUER when given, and has cnf.jkt. PROOF:
// typ dpop+jwt; alg ES256/384/512, RS256/384/512, PS256/384/512, EdDSA or Ed25519; a public jwk
// in its header that verifies it; htm = the request method; htu (query and fragment dropped,
// URL-normalized) = http://127.0.0.1:PORT + the request path without its query; |iat - now| <= 60 s;
// a jti not seen before (seen ones are kept 120 s); ath = base64url(SHA-256(TOKEN)); the RFC 7638
// SHA-256 thumbprint of its jwk = cnf.jkt; and, while nonces are demanded, nonce = the current
// nonce. Checks run in that order (token first); a proof's jti counts as seen once its signature
// verifies.
//   200 {"ok":true, "sub", "client_id", "scope", "jkt", "method", "path"}
//   401 {"error":"invalid_token" | "invalid_dpop_proof" | "use_dpop_nonce", "reason"} with
//       WWW-Authenticate: DPoP error="ERROR", error_description="REASON", algs="ES256 ..."
//   reasons: invalid_token: "missing token", "unsupported authorization scheme", "bad token
//       (JOSE CODE)", "expired token", "issuer mismatch", "token is not DPoP-bound", "bearer use
//       of a bound token" (a bound token sent as `Bearer`); invalid_dpop_proof: "missing proof",
//       "more than one proof", "bad proof (JOSE CODE)", "htm mismatch", "htu mismatch", "iat not
//       within 60 s", "missing jti", "replayed jti", "missing ath", "ath mismatch", "jkt
//       mismatch"; use_dpop_nonce: "missing nonce", "stale nonce" (with DPoP-Nonce).
// While nonces are demanded every answer under /api/ carries DPoP-Nonce: the current nonce.
// Control: POST /control/require_nonce?on=1|0 -> {"require_nonce":BOOL} (off at start);
// POST /control/rotate_nonce -> {"rotated":true} (the current nonce becomes stale);
// GET /stats -> {"accepted", "refused" (every 401), "replays", "nonce_challenges", "last_reason"
// (of the last refusal, null before one)}. Anything else: 404 {"error":"not_found"}.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';

import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, errors, jwtVerify } from 'jose';

const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
if (!arg('--jwks')) {
  console.error('usage: node resource_server.mjs --jwks JWKS_URI [--issuer ISSUER]');
  process.exit(2);
}
const keys = createRemoteJWKSet(new URL(arg('--jwks')), { cooldownDuration: 0 });
const issuer = arg('--issuer');
const algs = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519'];

const stats = { accepted: 0, refused: 0, replays: 0, nonce_challenges: 0, last_reason: null };
const nonce = { value: randomBytes(16).toString('base64url'), required: false };
const seen = new Map(); // jti -> when it may be forgotten (ms)
let origin;
const urlOf = (req) => URL.parse(origin + req.url) ?? new URL(origin);

class Refusal extends Error {
  constructor(error, reason) { super(reason); this.error = error; }
}
const badToken = (reason) => new Refusal('invalid_token', reason);
const badProof = (reason) => new Refusal('invalid_dpop_proof', reason);

// The claims of the access token in `authorization`, or throws.
async function checkToken(authorization) {
  const [scheme, token, ...rest] = (authorization ?? '').split(' ');
  if (!token || rest.length) throw badToken('missing token');
  const dpop = scheme.toLowerCase() === 'dpop';
  if (!dpop && scheme.toLowerCase() !== 'bearer') throw badToken('unsupported authorization scheme');
  let payload;
  try {
    ({ payload } = await jwtVerify(token, keys, { requiredClaims: ['exp'] }));
  } catch (e) {
    throw badToken(e instanceof errors.JWTExpired ? 'expired token' : `bad token (${e.code ?? e.message})`);
  }
  if (issuer && payload.iss !== issuer) throw badToken('issuer mismatch');
  if (typeof payload.cnf?.jkt !== 'string') throw badToken('token is not DPoP-bound');
  if (!dpop) throw badToken('bearer use of a bound token');
  return { token, payload };
}

// Checks the one DPoP proof of `req` for `token` bound to `jkt`, or throws.
async function checkProof(req, token, jkt) {
  const proofs = req.headersDistinct.dpop ?? [];
  if (proofs.length === 0) throw badProof('missing proof');
  if (proofs.length > 1) throw badProof('more than one proof');
  let jwt;
  try {
    jwt = await jwtVerify(proofs[0], EmbeddedJWK, { typ: 'dpop+jwt', algorithms: algs });
  } catch (e) {
    throw badProof(`bad proof (${e.code ?? e.message})`);
  }
  const { payload: claims, protectedHeader: header } = jwt;
  if (claims.htm !== req.method) throw badProof('htm mismatch');
  const htu = typeof claims.htu === 'string' ? URL.parse(claims.htu) : null;
  if (htu) Object.assign(htu, { search: '', hash: '' });
  if (htu?.href !== new URL(urlOf(req).pathname, origin).href) throw badProof('htu mismatch');
  const now = Date.now();
  if (typeof claims.iat !== 'number' || Math.abs(now / 1000 - claims.iat) > 60) throw badProof('iat not within 60 s');
  if (typeof claims.jti !== 'string' || !claims.jti) throw badProof('missing jti');
  for (const [jti, until] of seen) if (until < now) seen.delete(jti);
  if (seen.has(claims.jti)) {
    stats.replays += 1;
    throw badProof('replayed jti');
  }
  seen.set(claims.jti, now + 120_000);
  if (claims.ath === undefined) throw badProof('missing ath');
  if (claims.ath !== createHash('sha256').update(token, 'ascii').digest('base64url')) throw badProof('ath mismatch');
  if (await calculateJwkThumbprint(header.jwk) !== jkt) throw badProof('jkt mismatch');
  if (nonce.required && claims.nonce !== nonce.value) {
    throw new Refusal('use_dpop_nonce', claims.nonce === undefined ? 'missing nonce' : 'stale nonce');
  }
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

async function api(req, res) {
  const headers = nonce.required ? { 'dpop-nonce': nonce.value } : {};
  try {
    const { token, payload } = await checkToken(req.headers.authorization);
    await checkProof(req, token, payload.cnf.jkt);
    stats.accepted += 1;
    send(res, 200, {
      ok: true, sub: payload.sub ?? null, client_id: payload.client_id ?? null, scope: payload.scope ?? null,
      jkt: payload.cnf.jkt, method: req.method, path: urlOf(req).pathname,
    }, headers);
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    stats.refused += 1;
    stats.last_reason = e.message;
    if (e.error === 'use_dpop_nonce') {
      stats.nonce_challenges += 1;
      headers['dpop-nonce'] = nonce.value;
    }
    headers['www-authenticate'] = `DPoP error="${e.error}", error_description="${e.message}", algs="${algs.join(' ')}"`;
    send(res, 401, { error: e.error, reason: e.message }, headers);
  }
}

const server = http.createServer((req, res) => {
  const url = urlOf(req);
  const route = `${req.method} ${url.pathname}`;
  if (url.pathname.startsWith('/api/')) {
    req.resume();
    api(req, res).catch((e) => {
      console.error('resource_server:', e);
      send(res, 500, { error: 'server_error' });
    });
  } else if (route === 'POST /control/require_nonce') {
    nonce.required = url.searchParams.get('on') === '1';
    send(res, 200, { require_nonce: nonce.required });
  } else if (route === 'POST /control/rotate_nonce') {
    nonce.value = randomBytes(16).toString('base64url');
    send(res, 200, { rotated: true });
  } else if (route === 'GET /stats') {
    send(res, 200, stats);
  } else {
    send(res, 404, { error: 'not_found' });
  }
});
server.listen(0, '127.0.0.1', () => {
  origin = `http://127.0.0.1:${server.address().port}`;
  console.log(JSON.stringify({ url: origin }));
});
