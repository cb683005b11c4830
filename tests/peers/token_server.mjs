// An OAuth 2.0 token endpoint (client credentials), a GCE-style metadata server and scripted
// faults, on plain HTTP at 127.0.0.1; given a directory (node token_server.mjs [DIR]), the same
// routes on HTTPS too, with a CA made at start-up and written to DIR/ca.pem. Prints one JSON
// line when ready: {"port":N} (and "https_port":N, "ca_file":PATH with DIR).
//   node token_server.mjs [DIR] [--jwks URL]
// With --jwks, a relying party of SPIFFE JWT-SVIDs whose keys are at URL (fetched again when a
// kid is unknown):
//   POST /spiffe/token          client_credentials with client_assertion_type jwt-bearer and a
//                               JWT-SVID as client_assertion: aud = this URL, sub in example.org
//   POST /spiffe/exchange       RFC 8693: subject_token a JWT-SVID (subject_token_type jwt), aud =
//                               this URL; answers issued_token_type access_token
//   POST /token                 grant_type=client_credentials; client "awaken-client" with
//                               secret "s3cret-value", by HTTP Basic or in the form
//   GET  /computeMetadata/v1/instance/service-accounts/default/token[?scopes=a,b]
//                               needs Metadata-Flavor: Google
//   POST /fault/NAME/token      503-then-ok (per ?key=), 429 (Retry-After: 1), invalid-grant,
//                               slow (3 s), malformed, huge (8 MiB), no-expires, zero-expires,
//                               long-expires, short-expires (70 s), empty-token, html-200
//   POST /google/token          the JWT-bearer grant (RFC 7523): the assertion must be RS256
//                               with kid "test-key-1", signed by the service-account key this
//                               peer prints, iss = SA_EMAIL, aud = this URL, a scope, exp = iat + 3600
//   GET  /last                  the last token request seen: {method, path, headers, body}
//   GET  /api/resource          a protected resource: 200 for a bearer issued here, else 401
//   POST /api/revoke-all        revokes every token issued so far
// The ready line also carries that key and another one: {"port":N,"sa_key":PEM,"other_key":PEM}
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

import { makeTestCa } from './test_ca.mjs';

const saEmail = 'minter@awaken-test.iam.gserviceaccount.com';
const saKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pem = (k) => k.privateKey.export({ type: 'pkcs8', format: 'pem' });

const jwksFlag = process.argv.indexOf('--jwks');
const spiffeKeys = jwksFlag > 0 ? createRemoteJWKSet(new URL(process.argv[jwksFlag + 1]), { cooldownDuration: 0 }) : null;
const dirArg = process.argv.slice(2).find((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--jwks');

// Verifies a JWT-SVID for `path` on this server; returns its claims or throws.
async function verifySvid(token, path) {
  const audience = `http://127.0.0.1:${server.address().port}${path}`;
  const { payload } = await jwtVerify(token || '', spiffeKeys, { audience, algorithms: ['ES256', 'RS256', 'PS256'] });
  if (!String(payload.sub).startsWith('spiffe://example.org/')) throw new Error('sub is not in example.org');
  return payload;
}

const clientId = 'awaken-client';
const clientSecret = 's3cret-value';
let minted = 0;
const issued = new Set();   // access tokens handed out and not revoked

let last = null;
const failuresLeft = new Map();

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

function token(scope) {
  minted += 1;
  const access = `at-${minted}${scope ? '-' + scope.replace(/\s+/g, '+') : ''}`;
  issued.add(access);
  return { access_token: access, token_type: 'Bearer', expires_in: 3600 };
}

function clientCredentials(req, form) {
  const auth = req.headers.authorization || '';
  if (auth.startsWith('Basic ')) {
    const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return { id: decodeURIComponent(decoded.slice(0, colon)), secret: decodeURIComponent(decoded.slice(colon + 1)),
      both: form.has('client_secret') };
  }
  return { id: form.get('client_id'), secret: form.get('client_secret'), both: false };
}

function handler(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://peer');
    const body = Buffer.concat(chunks).toString('utf8');
    const parts = url.pathname.split('/').filter(Boolean);
    if (url.pathname === '/last') return json(res, 200, last);
    // A protected resource: a bearer this server issued and has not revoked, else 401.
    if (url.pathname === '/api/resource') {
      const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
      if (!issued.has(bearer)) {
        return json(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      return json(res, 200, { resource: 'granted', token: bearer.split('-')[0] + '-' + bearer.split('-')[1] });
    }
    if (url.pathname === '/api/revoke-all' && req.method === 'POST') {
      const n = issued.size;
      issued.clear();
      return json(res, 200, { revoked: n });
    }
    last = { method: req.method, path: req.url, headers: req.headers, body };
    const form = new URLSearchParams(body);

    if (url.pathname === '/token' && req.method === 'POST') {
      if ((req.headers['content-type'] || '') !== 'application/x-www-form-urlencoded')
        return json(res, 400, { error: 'invalid_request', error_description: 'form body expected' });
      if (form.get('grant_type') !== 'client_credentials')
        return json(res, 400, { error: 'unsupported_grant_type' });
      const c = clientCredentials(req, form);
      if (c.both) return json(res, 400, { error: 'invalid_request', error_description: 'two client authentications' });
      if (c.id !== clientId || c.secret !== clientSecret)
        return json(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' },
          { 'www-authenticate': 'Basic realm="token"' });
      return json(res, 200, token(form.get('scope') || ''));
    }

    if (url.pathname === '/google/token' && req.method === 'POST') {
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
        return json(res, 400, { error: 'unsupported_grant_type' });
      const assertion = form.get('assertion') || '';
      const audience = `http://127.0.0.1:${server.address().port}/google/token`;
      return (async () => {
        try {
          const header = decodeProtectedHeader(assertion);
          if (header.kid !== 'test-key-1') throw new Error('unknown kid');
          const { payload } = await jwtVerify(assertion, saKey.publicKey,
            { algorithms: ['RS256'], issuer: saEmail, audience, typ: 'JWT' });
          if (typeof payload.scope !== 'string' || payload.scope === '') throw new Error('no scope');
          if (payload.exp - payload.iat !== 3600) throw new Error('lifetime is not 3600 s');
          json(res, 200, token(payload.scope));
        } catch (e) {
          json(res, 400, { error: 'invalid_grant', error_description: `assertion refused: ${e.code || e.message}` });
        }
      })();
    }

    if (spiffeKeys && url.pathname === '/spiffe/token' && req.method === 'POST') {
      if (form.get('grant_type') !== 'client_credentials') return json(res, 400, { error: 'unsupported_grant_type' });
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
        return json(res, 400, { error: 'invalid_client', error_description: 'a JWT-SVID client assertion is required' });
      return verifySvid(form.get('client_assertion'), '/spiffe/token')
        .then((claims) => json(res, 200, { ...token(form.get('scope') || ''), subject: claims.sub }))
        .catch((e) => json(res, 401, { error: 'invalid_client', error_description: `assertion refused: ${e.code || e.message}` }));
    }

    if (spiffeKeys && url.pathname === '/spiffe/exchange' && req.method === 'POST') {
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange')
        return json(res, 400, { error: 'unsupported_grant_type' });
      if (form.get('subject_token_type') !== 'urn:ietf:params:oauth:token-type:jwt')
        return json(res, 400, { error: 'invalid_request', error_description: 'subject_token_type must be jwt' });
      return verifySvid(form.get('subject_token'), '/spiffe/exchange')
        .then(() => json(res, 200, { ...token(form.get('scope') || ''),
          issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' }))
        .catch((e) => json(res, 400, { error: 'invalid_grant', error_description: `subject token refused: ${e.code || e.message}` }));
    }

    if (url.pathname === '/computeMetadata/v1/instance/service-accounts/default/token' && req.method === 'GET') {
      if (req.headers['metadata-flavor'] !== 'Google') {
        res.writeHead(403, { 'content-type': 'text/html' });
        return res.end('Missing Metadata-Flavor:Google header.');
      }
      return json(res, 200, token((url.searchParams.get('scopes') || '').replace(/,/g, ' ')));
    }

    if (parts[0] === 'fault' && parts[2] === 'token') {
      switch (parts[1]) {
        case '503-then-ok': {
          const key = url.searchParams.get('key') || '';
          const left = failuresLeft.has(key) ? failuresLeft.get(key) : 1;
          if (left > 0) {
            failuresLeft.set(key, left - 1);
            return json(res, 503, { error: 'temporarily_unavailable' });
          }
          return json(res, 200, token(form.get('scope') || ''));
        }
        case '429': return json(res, 429, { error: 'slow_down' }, { 'retry-after': '1' });
        case 'invalid-grant':
          return json(res, 400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' });
        case 'slow': return setTimeout(() => json(res, 200, token('')), 3000);
        case 'malformed':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('{"access_token": "at-1", "expires_in": ');
        case 'huge':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('{"access_token":"' + 'x'.repeat(8 << 20) + '","expires_in":3600}');
        case 'no-expires': return json(res, 200, { access_token: 'at-x', token_type: 'Bearer' });
        case 'zero-expires': return json(res, 200, { access_token: 'at-x', token_type: 'Bearer', expires_in: 0 });
        case 'short-expires':  // inside the broker's soft window at once: a refresh at every ask
          return json(res, 200, { ...token(form.get('scope') || ''), expires_in: 70 });
        case 'long-expires':
          return json(res, 200, { access_token: 'at-long', token_type: 'Bearer', expires_in: 1e9 });
        case 'empty-token': return json(res, 200, { access_token: '', token_type: 'Bearer', expires_in: 3600 });
        case 'html-200':
          res.writeHead(200, { 'content-type': 'text/html' });
          return res.end('<html>captive portal</html>');
        default: break;
      }
    }
    json(res, 404, { error: 'not_found' });
  });
}

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
const server = http.createServer(handler);
const ready = { port: await listen(server), sa_email: saEmail, sa_key: pem(saKey), other_key: pem(otherKey) };
if (dirArg) {
  const ca = makeTestCa(dirArg);
  ready.https_port = await listen(https.createServer({ key: ca.key, cert: ca.cert }, handler));
  ready.ca_file = ca.caFile;
}
console.log(JSON.stringify(ready));
