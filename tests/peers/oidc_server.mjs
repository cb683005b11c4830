// An OpenID provider (npm oidc-provider) on plain HTTP at 127.0.0.1 with the clients awaken's
// minters need.
//   node oidc_server.mjs [--jwks URL] [--tls DIR --client-ca FILE] [--dpop]
// Prints one JSON line when ready:
//   {"issuer":URL, "token_endpoint":URL, "jwks_uri":URL, "keys":{"rs256":PEM, "ps256":PEM,
//    "es256":PEM, "wrong":PEM, "sa":PEM}, "sa_email":EMAIL}
// and with --tls also "https_token_endpoint":"https://127.0.0.1:PORT/token", "ca_file":PATH;
// with --dpop also "dpop":true.
// Clients (all limited to the client_credentials grant and the scopes api:read api:write):
//   awaken-basic / awaken-post     client_secret_basic / client_secret_post, secret "s3cret-value"
//   awaken-rs256, -ps256, -es256   private_key_jwt, each with its own key and signing algorithm
//   awaken-mtls                    tls_client_auth (RFC 8705): a client certificate on the HTTPS
//                                  endpoint that verifies against FILE (the client sends any
//                                  intermediates) and has the URI SAN spiffe://example.org/workload;
//                                  send client_id=awaken-mtls. Over HTTP, without a certificate,
//                                  with one that does not verify or for another ID: 401
//                                  invalid_client. (self_signed_tls_client_auth is enabled too,
//                                  but no client uses it.)
// The JWT-bearer grant (RFC 7523 section 2.1) is registered for Google-style service-account
// assertions that carry no client authentication: the assertion must be RS256, signed by the
// "sa" key, iss = SA_EMAIL, aud = the token endpoint, a non-empty scope, exp - iat <= 3600.
// Access tokens are opaque and live 600 s (expires_in), except as RFC 8707 says below.
// RFC 8707: a client_credentials request (any client above, or awaken-spiffe) with one
// resource=https://api.awaken.test/... (https, host api.awaken.test) gets a JWT access token
// (typ at+jwt, ES256, kid "provider-es256", keys at JWKS_URI) with aud = that resource, scope =
// the requested scopes within api:read api:write, exp = iat + 600; any other resource: 400
// invalid_target; two resources: 400 invalid_target.
// With --jwks, SPIFFE JWT-SVIDs are accepted, verified with the keys at URL (fetched again when a
// kid is unknown): ES256, RS256 or PS256, exp in the future, sub under spiffe://example.org/.
// TOKEN_ENDPOINTS is the http token endpoint, and with --tls the https one too.
//   - JWT-bearer grant with an SVID: when the assertion's unverified sub starts with spiffe://,
//     it must verify as an SVID with aud one of TOKEN_ENDPOINTS (else 400 invalid_grant), and the
//     form needs scope (else 400 invalid_request) within api:read api:write (else 400
//     invalid_scope). Answers {access_token, token_type:"Bearer", expires_in:600, scope}.
//   - Token exchange (RFC 8693), grant_type urn:ietf:params:oauth:grant-type:token-exchange,
//     for the public client awaken-exchange (assumed when the request names no client and
//     carries no client authentication): subject_token_type urn:ietf:params:oauth:token-type:jwt
//     and requested_token_type absent or urn:ietf:params:oauth:token-type:access_token, else 400
//     invalid_request; subject_token an SVID with aud one of TOKEN_ENDPOINTS, else 400
//     invalid_request (RFC 8693 section 2.2.2); scope optional, within api:read api:write (else
//     400 invalid_scope); actor_token needs actor_token_type (not verified); resource and
//     audience (each may repeat) are only recorded. Answers {access_token, issued_token_type:
//     "urn:ietf:params:oauth:token-type:access_token", token_type:"Bearer", expires_in:600,
//     scope (when asked)}.
//   - Client authentication by SVID for grant_type client_credentials: client_assertion_type
//     urn:ietf:params:oauth:client-assertion-type:jwt-spiffe, or ...:jwt-bearer with a
//     client_assertion whose unverified sub starts with spiffe://. The SVID must verify with aud
//     one of TOKEN_ENDPOINTS or the issuer; sub spiffe://example.org/workload is the client
//     awaken-spiffe (client_credentials, scopes api:read api:write); a client_id in the form must
//     be awaken-spiffe or that sub. Failures: 401 {error:"invalid_client", error_description}.
//     awaken-spiffe cannot be used in any other way (401 invalid_client).
// Without --jwks these requests go to the provider as they are and fail there.
// GET /last: the form of the last POST /token (null before one), without token values:
//   {grant_type, client_assertion_type, resource (an array when repeated), audience (likewise),
//    scope, client_id, subject_token_type, requested_token_type, has_client_assertion,
//    has_assertion, has_subject_token (booleans), tls_client_cert_uri (the client certificate's
//    first URI SAN), scheme ("http" | "https"), dpop}; absent values are null. dpop is null when
//    the request had no DPoP header, else the proof decoded without verification:
//    {header: {typ, alg, jwk, ...}, claims: {htm, htu, iat, jti, nonce?, ath?, ...}, jkt (the RFC
//    7638 SHA-256 thumbprint of header.jwk)}, each null when it cannot be decoded.
// DPoP (RFC 9449). Even without --dpop the provider's default binds client_credentials tokens to
// a valid proof (no nonces; the other grants ignore the header). With --dpop:
//   - Every token request with a DPoP header (any grant, any client) has its proof checked
//     before the provider sees it (after SVID client authentication): one compact JWS, typ
//     dpop+jwt, alg ES256/384/512, RS256/384/512, PS256/384/512, EdDSA or Ed25519, a public jwk
//     in its header that verifies it, htm "POST", htu (query and fragment dropped, URL-normalized)
//     = the token endpoint the request came to (the http one, or the https one with --tls),
//     |iat - now| <= 60 s, a jti not seen before (seen ones are kept 120 s), and the nonce rule
//     below. Refusal: 400 {error:"invalid_dpop_proof", error_description}. A valid proof makes
//     the answer's token_type "DPoP" and binds the token to the key: JWT access tokens (RFC 8707
//     above) carry cnf {jkt}; opaque tokens (also those of the JWT-bearer grant and token
//     exchange) record jkt. Every answer to a request with a proof carries the header DPoP-Nonce
//     (the current nonce), whether nonces are demanded or not.
//   - Nonces: one server nonce, changed only by POST /dpop/rotate_nonce. Once POST
//     /dpop/require_nonce?on=1 (off at start; on=0 turns it off), a proof without the current
//     nonce gets 400 {error:"use_dpop_nonce", error_description} with DPoP-Nonce; a proof with a
//     nonce that is not the current one gets that answer whether nonces are demanded or not.
//     Requests without a proof are not concerned.
//   - Client awaken-dpop: client_secret_basic, secret "s3cret-value", client_credentials, scopes
//     api:read api:write, dpop_bound_access_tokens. Without a proof the provider answers 400
//     {error:"invalid_grant", error_description:"grant request is invalid"}.
//   - Control: POST /dpop/require_nonce?on=1|0 -> {require_nonce}; POST /dpop/rotate_nonce
//     [?value=V, the new nonce as given, even one that is not a valid nonce] -> {rotated:true}; GET /dpop/stats -> {token_requests (POST /token), dpop_requests (those with
//     a DPoP header), nonce_challenges (those answered use_dpop_nonce), require_nonce}.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import querystring from 'node:querystring';

import {
  calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, EmbeddedJWK, jwtVerify,
} from 'jose';

import { makeTestCa } from './test_ca.mjs';

// The provider's notices about running as a development server (in-memory adapter, dev keys,
// Node version, the body parsed below) are expected for a test peer: keep stdout for the ready
// line and stderr for real errors.
for (const level of ['info', 'warn']) {
  const original = console[level];
  console[level] = (...args) => { if (!String(args[0]).startsWith('oidc-provider ')) original(...args); };
}

// Imported once the filter is in place: the module warns as it loads.
const { default: Provider, errors } = await import('oidc-provider');

const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const tlsDir = arg('--tls');
const clientCaFile = arg('--client-ca');
const dpopMode = process.argv.includes('--dpop');
if (Boolean(tlsDir) !== Boolean(clientCaFile)) {
  console.error('usage: node oidc_server.mjs [--jwks URL] [--tls DIR --client-ca FILE] [--dpop]');
  process.exit(2);
}
const spiffeKeys = arg('--jwks') ? createRemoteJWKSet(new URL(arg('--jwks')), { cooldownDuration: 0 }) : null;

const jwtBearer = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const tokenExchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const assertionBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const assertionSpiffe = 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const saEmail = 'minter@awaken-test.iam.gserviceaccount.com';
const saClient = 'google-service-accounts';
const apiScopes = ['api:read', 'api:write'];
const dpopAlgs = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519'];

const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const keys = {
  rs256: rsa(), ps256: rsa(), es256: generateKeyPairSync('ec', { namedCurve: 'P-256' }), wrong: rsa(), sa: rsa(),
};
const pem = (k) => k.privateKey.export({ type: 'pkcs8', format: 'pem' });
const jwk = (k, kid) => ({ ...k.publicKey.export({ format: 'jwk' }), kid });
const signingKeys = [[rsa(), 'provider-rs256'], [generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'provider-es256']]
  .map(([k, kid]) => ({ ...k.privateKey.export({ format: 'jwk' }), kid, use: 'sig' }));

const listen = (s) => new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s.address().port)));
const server = http.createServer();
const issuer = `http://127.0.0.1:${await listen(server)}`;
let httpsServer;
let ca;
const tokenEndpoints = [`${issuer}/token`];
if (tlsDir) {
  ca = makeTestCa(tlsDir);
  httpsServer = https.createServer({
    key: ca.key, cert: ca.cert, requestCert: true, rejectUnauthorized: false, ca: readFileSync(clientCaFile),
  });
  tokenEndpoints.push(`https://127.0.0.1:${await listen(httpsServer)}/token`);
}

// The client certificate of a request on the HTTPS server, and its URI SANs.
const peerCert = (ctx) => ctx.socket.getPeerX509Certificate?.();
const sanUris = (cert) => (cert?.subjectAltName ?? '').split(', ')
  .map((san) => (san.startsWith('URI:"') ? JSON.parse(san.slice(4)) : san))
  .filter((san) => san.startsWith('URI:')).map((san) => san.slice(4));

const common = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: apiScopes.join(' ') };
const keyClient = (alg, key) => ({
  ...common, client_id: `awaken-${alg.toLowerCase()}`, token_endpoint_auth_method: 'private_key_jwt',
  token_endpoint_auth_signing_alg: alg, jwks: { keys: [jwk(key, `${alg.toLowerCase()}-1`)] },
});

const provider = new Provider(issuer, {
  clients: [
    { ...common, client_id: 'awaken-basic', client_secret: 's3cret-value', token_endpoint_auth_method: 'client_secret_basic' },
    { ...common, client_id: 'awaken-post', client_secret: 's3cret-value', token_endpoint_auth_method: 'client_secret_post' },
    keyClient('RS256', keys.rs256),
    keyClient('PS256', keys.ps256),
    keyClient('ES256', keys.es256),
    { client_id: saClient, grant_types: [jwtBearer], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'none' },
    { ...common, client_id: 'awaken-mtls', token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_uri: 'spiffe://example.org/workload' },
    ...(dpopMode ? [
      { ...common, client_id: 'awaken-dpop', client_secret: 's3cret-value',
        token_endpoint_auth_method: 'client_secret_basic', dpop_bound_access_tokens: true },
    ] : []),
    ...(spiffeKeys ? [
      { ...common, client_id: 'awaken-spiffe', token_endpoint_auth_method: 'none' },
      { ...common, client_id: 'awaken-exchange', grant_types: [tokenExchange], token_endpoint_auth_method: 'none' },
    ] : []),
  ],
  jwks: { keys: signingKeys },
  scopes: apiScopes,
  ...(dpopMode ? { enabledJWA: { dPoPSigningAlgValues: dpopAlgs } } : {}),
  features: {
    ...(dpopMode ? { dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => dpopNonce.required } } : {}),
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => peerCert(ctx)?.toString(),
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_san_uri'
        && sanUris(peerCert(ctx)).includes(expected),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      getResourceServerInfo: (ctx, resource) => {
        const url = URL.parse(resource);
        if (url?.protocol !== 'https:' || url.host !== 'api.awaken.test') throw new errors.InvalidTarget();
        return { scope: apiScopes.join(' '), audience: resource, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
      },
    },
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none',
    'tls_client_auth', 'self_signed_tls_client_auth'],
  ttl: { ClientCredentials: 600 },
  routes: { token: '/token' },
});
provider.proxy = false;

// The DPoP nonce. The provider's own nonces change by the minute and cannot be made stale on
// demand, so with --dpop its nonce source (internal state, reached through its own module) is
// this one, the same for every grant.
const dpopNonce = { value: randomBytes(16).toString('base64url'), required: false };
if (dpopMode) {
  const { default: internals } = await import('oidc-provider/lib/helpers/weak_cache.js');
  internals(provider).DPoPNonces = {
    nextChallenge: () => dpopNonce.value, checkChallenge: (value) => value === dpopNonce.value,
  };
}
const dpopStats = { token_requests: 0, dpop_requests: 0, nonce_challenges: 0 };
const dpopJtis = new Map(); // jti -> when it may be forgotten (ms)

// Checks the DPoP proof of a token request (see the header comment): the thumbprint of its key,
// or throws an error whose `error` is the OAuth error code.
async function checkProof(ctx, proof) {
  const refuse = (error, description) => Object.assign(new Error(description), { error });
  let jwt;
  try {
    jwt = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: dpopAlgs });
  } catch (e) {
    throw refuse('invalid_dpop_proof', `DPoP proof refused: ${why(e)}`);
  }
  const { payload: claims, protectedHeader: header } = jwt;
  if (claims.htm !== ctx.method) throw refuse('invalid_dpop_proof', 'DPoP proof htm mismatch');
  const htu = typeof claims.htu === 'string' ? URL.parse(claims.htu) : null;
  if (htu) Object.assign(htu, { search: '', hash: '' });
  if (htu?.href !== new URL('/token', ctx.href).href) throw refuse('invalid_dpop_proof', 'DPoP proof htu mismatch');
  const now = Date.now();
  if (typeof claims.iat !== 'number' || Math.abs(now / 1000 - claims.iat) > 60) {
    throw refuse('invalid_dpop_proof', 'DPoP proof iat is not within 60 s of now');
  }
  if (typeof claims.jti !== 'string' || !claims.jti) throw refuse('invalid_dpop_proof', 'DPoP proof has no jti');
  for (const [jti, until] of dpopJtis) if (until < now) dpopJtis.delete(jti);
  if (dpopJtis.has(claims.jti)) throw refuse('invalid_dpop_proof', 'DPoP proof jti replayed');
  dpopJtis.set(claims.jti, now + 120_000);
  if ((dpopNonce.required || claims.nonce !== undefined) && claims.nonce !== dpopNonce.value) {
    throw refuse('use_dpop_nonce', claims.nonce === undefined ? 'nonce is required in the DPoP proof'
      : 'invalid nonce in DPoP proof');
  }
  return calculateJwkThumbprint(header.jwk);
}

// A DPoP header as GET /last shows it.
async function decodeProof(proof) {
  if (!proof) return null;
  const attempt = async (f) => { try { return await f(); } catch { return null; } };
  const header = await attempt(() => decodeProtectedHeader(proof));
  const claims = await attempt(() => decodeJwt(proof));
  return { header, claims, jkt: await attempt(() => calculateJwkThumbprint(header.jwk)) };
}

const fail = (ErrorClass, description) => Object.assign(new ErrorClass(), { error_description: description });
const why = (e) => e.code || e.message;
const unverifiedSub = (jwt) => { try { return String(decodeJwt(jwt).sub ?? ''); } catch { return ''; } };

// Verifies a JWT-SVID for one of `audience`; its claims, or throws.
async function verifySvid(token, audience) {
  const { payload } = await jwtVerify(token || '', spiffeKeys, { audience, algorithms: ['ES256', 'RS256', 'PS256'],
    requiredClaims: ['exp'] });
  if (!String(payload.sub).startsWith('spiffe://example.org/')) throw new Error('sub is not in example.org');
  return payload;
}

// The scope asked of a registered grant, within apiScopes.
function grantScope(scope, required) {
  if (!scope) {
    if (required) throw new errors.InvalidRequest("missing required parameter 'scope'");
    return undefined;
  }
  const refused = scope.split(' ').filter((s) => s && !apiScopes.includes(s));
  if (refused.length) throw new errors.InvalidScope('requested scope is not allowed', refused.join(' '));
  return scope;
}

async function issue(ctx, scope, extra = {}) {
  const token = new provider.ClientCredentials({ client: ctx.oidc.client, scope });
  if (ctx.state.dpopJkt) token.setThumbprint('jkt', ctx.state.dpopJkt);
  ctx.body = { access_token: await token.save(), ...extra, token_type: token.tokenType, expires_in: token.expiration,
    ...(scope ? { scope } : {}) };
}

provider.registerGrantType(jwtBearer, async (ctx) => {
  const { assertion, scope } = ctx.oidc.params;
  if (spiffeKeys && unverifiedSub(assertion).startsWith('spiffe://')) {
    try {
      await verifySvid(assertion, tokenEndpoints);
    } catch (e) {
      throw fail(errors.InvalidGrant, `assertion refused: ${why(e)}`);
    }
    return issue(ctx, grantScope(scope, true));
  }
  let payload;
  try {
    ({ payload } = await jwtVerify(assertion || '', keys.sa.publicKey,
      { algorithms: ['RS256'], issuer: saEmail, audience: provider.urlFor('token'), requiredClaims: ['exp', 'iat'] }));
  } catch (e) {
    throw new errors.InvalidGrant(`assertion refused: ${e.code || e.message}`);
  }
  if (typeof payload.scope !== 'string' || payload.scope === '') throw new errors.InvalidGrant('assertion has no scope');
  if (payload.exp - payload.iat > 3600) throw new errors.InvalidGrant('assertion lives longer than an hour');
  return issue(ctx, payload.scope);
}, ['assertion', 'scope']);

if (spiffeKeys) {
  provider.registerGrantType(tokenExchange, async (ctx) => {
    const p = ctx.oidc.params;
    if (!p.subject_token) throw new errors.InvalidRequest("missing required parameter 'subject_token'");
    if (p.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt') {
      throw new errors.InvalidRequest('subject_token_type must be urn:ietf:params:oauth:token-type:jwt');
    }
    if (p.requested_token_type !== undefined && p.requested_token_type !== accessTokenType) {
      throw new errors.InvalidRequest(`requested_token_type must be ${accessTokenType}`);
    }
    if (p.actor_token !== undefined && !p.actor_token_type) {
      throw new errors.InvalidRequest('actor_token_type is required with actor_token');
    }
    try {
      await verifySvid(p.subject_token, tokenEndpoints);
    } catch (e) {
      throw new errors.InvalidRequest(`subject_token refused: ${why(e)}`);
    }
    return issue(ctx, grantScope(p.scope, false), { issued_token_type: accessTokenType });
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
    'actor_token', 'actor_token_type'], ['resource', 'audience']);
}

// SVID client authentication for client_credentials: the form the provider is to see instead
// (client awaken-spiffe), or throws a description of why the client is refused.
async function spiffeClient(form) {
  let claims;
  try {
    claims = await verifySvid(form.client_assertion, [...tokenEndpoints, issuer]);
  } catch (e) {
    throw new Error(`JWT-SVID refused: ${why(e)}`);
  }
  if (claims.sub !== 'spiffe://example.org/workload') throw new Error(`no client is registered for ${claims.sub}`);
  if (form.client_id !== undefined && form.client_id !== 'awaken-spiffe' && form.client_id !== claims.sub) {
    throw new Error('client_id does not match the JWT-SVID');
  }
  const { client_assertion: _, client_assertion_type: __, ...rest } = form;
  return { ...rest, client_id: 'awaken-spiffe' };
}

let last = null;
const lastOf = async (form, ctx) => {
  const value = (name) => form[name] ?? null;
  return {
    ...Object.fromEntries(['grant_type', 'client_assertion_type', 'resource', 'audience', 'scope', 'client_id',
      'subject_token_type', 'requested_token_type'].map((name) => [name, value(name)])),
    has_client_assertion: form.client_assertion !== undefined, has_assertion: form.assertion !== undefined,
    has_subject_token: form.subject_token !== undefined,
    tls_client_cert_uri: sanUris(peerCert(ctx))[0] ?? null, scheme: ctx.protocol,
    dpop: await decodeProof(ctx.get('dpop')),
  };
};

// With --dpop: the control routes, the counters, and DPoP-Nonce on every answer to a proof.
if (dpopMode) {
  provider.use(async (ctx, next) => {
    const answer = (body) => { ctx.type = 'application/json'; ctx.body = JSON.stringify(body); };
    const route = `${ctx.method} ${ctx.path}`;
    if (route === 'POST /dpop/require_nonce') {
      dpopNonce.required = ctx.query.on === '1';
      return answer({ require_nonce: dpopNonce.required });
    }
    if (route === 'POST /dpop/rotate_nonce') {
      dpopNonce.value = ctx.query.value ?? randomBytes(16).toString('base64url');
      return answer({ rotated: true });
    }
    if (route === 'GET /dpop/stats') return answer({ ...dpopStats, require_nonce: dpopNonce.required });
    if (route !== 'POST /token') return next();
    const withProof = ctx.get('dpop') !== '';
    dpopStats.token_requests += 1;
    if (withProof) dpopStats.dpop_requests += 1;
    await next();
    if (withProof) ctx.set('DPoP-Nonce', dpopNonce.value);
    if (ctx.body?.error === 'use_dpop_nonce') dpopStats.nonce_challenges += 1;
  });
}

// Reads the token form before the provider does: records it for GET /last; names the public
// client a service-account assertion or a token exchange is for, since neither authenticates a
// client; authenticates SVID clients; and with --dpop checks a DPoP proof.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/last') {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(last);
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += chunk.length;
      if (size > 64 * 1024) ctx.throw(413);
      chunks.push(chunk);
    }
    let form = querystring.parse(Buffer.concat(chunks).toString('utf8'));
    last = await lastOf(form, ctx);
    const noClient = form.client_id === undefined && !ctx.get('authorization') && form.client_assertion === undefined;
    if (form.grant_type === jwtBearer && form.client_id === undefined && !ctx.get('authorization')) form.client_id = saClient;
    if (spiffeKeys && form.grant_type === tokenExchange && noClient) form.client_id = 'awaken-exchange';
    const svidClient = spiffeKeys && form.grant_type === 'client_credentials' && typeof form.client_assertion === 'string'
      && (form.client_assertion_type === assertionSpiffe
        || (form.client_assertion_type === assertionBearer && unverifiedSub(form.client_assertion).startsWith('spiffe://')));
    try {
      if (svidClient) form = await spiffeClient(form);
      else if (form.client_id === 'awaken-spiffe') throw new Error('awaken-spiffe authenticates with a JWT-SVID only');
    } catch (e) {
      ctx.status = 401;
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: 'invalid_client', error_description: e.message };
      return;
    }
    if (dpopMode && ctx.get('dpop')) {
      try {
        ctx.state.dpopJkt = await checkProof(ctx, ctx.get('dpop'));
      } catch (e) {
        ctx.status = 400;
        ctx.set('cache-control', 'no-store');
        ctx.body = { error: e.error, error_description: e.message };
        return;
      }
    }
    ctx.request.body = form;
  }
  await next();
});

const callback = provider.callback();
server.on('request', callback);
httpsServer?.on('request', callback);
console.log(JSON.stringify({
  issuer, token_endpoint: provider.urlFor('token'), jwks_uri: provider.urlFor('jwks'), sa_email: saEmail,
  keys: Object.fromEntries(Object.entries(keys).map(([name, k]) => [name, pem(k)])),
  ...(tlsDir ? { https_token_endpoint: tokenEndpoints[1], ca_file: ca.caFile } : {}),
  ...(dpopMode ? { dpop: true } : {}),
}));
