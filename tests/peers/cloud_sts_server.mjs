// Cloud security token services (Google STS and IAM credentials, AWS STS, Entra ID) on plain HTTP
// at 127.0.0.1, for awaken's workload identity federation.
//   node cloud_sts_server.mjs [--jwks URL]
// Prints one JSON line when ready:
//   {"port":N, "issuer":"https://oidc.awaken.test", "issuer_key":PEM (PKCS#8, RSA 2048),
//    "google_audience":"//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/
//    awaken-pool/providers/awaken-provider", "azure_client_id":"7f1c0c8e-0000-4000-8000-00000000a2ae",
//    "azure_tenant_id":"awaken-tenant"}
// An identity token (subject_token, WebIdentityToken, client_assertion) is accepted when it
// verifies for the audience the route names, either
//   - as a token of the external OIDC issuer made at start-up (a Kubernetes service-account
//     issuer): its unverified iss is ISSUER; RS256, kid "k8s-1", signed by issuer_key; or
//   - with --jwks, as a SPIFFE JWT-SVID (any other iss or none): ES256, RS256 or PS256, verified
//     with the keys at URL (fetched again when a kid is unknown), sub under spiffe://example.org/.
// exp is required to be in the future (no clock tolerance).
// Routes (request bodies over 64 KiB: 413; unknown paths: 404 {"error":"not_found"}):
//   POST /v1/token  Google STS token exchange; a form (or a JSON object): grant_type
//       urn:ietf:params:oauth:grant-type:token-exchange, requested_token_type
//       urn:ietf:params:oauth:token-type:access_token, audience = GOOGLE_AUDIENCE,
//       subject_token_type urn:ietf:params:oauth:token-type:jwt or ...:id_token, a non-empty
//       scope, subject_token for aud GOOGLE_AUDIENCE, optional options (must parse as JSON).
//       200 {access_token:"sts-N", issued_token_type:"urn:ietf:params:oauth:token-type:access_token",
//       token_type:"Bearer", expires_in:3600}; 400 {error:"invalid_request", error_description}
//       for a missing or wrong parameter, 400 {error:"invalid_grant", error_description} for a
//       subject token refused (bad or expired).
//   POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken  Google IAM credentials; the
//       path is percent-decoded first; JSON body {scope:[strings, at least one], lifetime:"Ns"
//       (optional, default "3600s", 1..43200)}. Checked in this order, every error being
//       {error:{code, message, status}}: Authorization: Bearer sts-N issued by /v1/token, else 401
//       UNAUTHENTICATED "Request had invalid authentication credentials."; EMAIL ends with
//       .iam.gserviceaccount.com, else 403 PERMISSION_DENIED "Permission
//       'iam.serviceAccounts.getAccessToken' denied"; body, else 400 INVALID_ARGUMENT; an EMAIL
//       whose local part starts with "flaky-": its first call (that gets this far) 503
//       UNAVAILABLE "The service is currently unavailable.". 200 {accessToken:"ya29.N",
//       expireTime:"YYYY-MM-DDTHH:MM:SSZ" (now + lifetime)}. Every call naming EMAIL counts.
//   GET  /subject-token[?format=json]  a URL-sourced credential: needs header
//       x-subject-token-key: awaken, else 403 text/plain. A fresh issuer token (iss ISSUER, sub
//       system:serviceaccount:default:awaken, aud GOOGLE_AUDIENCE, iat now, exp iat + 600) as
//       text/plain, or with format=json as {"id_token":TOKEN}.
//   POST /issue?aud=A[&ttl=S][&sub=X]  text/plain: an issuer token (header kid "k8s-1", typ JWT;
//       iss ISSUER, aud A (required, else 400), sub X (default system:serviceaccount:default:
//       awaken), iat now, exp now + S; S is an integer, default 600, negative for an expired one).
//   POST /  AWS STS query API, a form: Action=AssumeRoleWithWebIdentity, Version=2011-06-15,
//       RoleArn, RoleSessionName, WebIdentityToken (for aud "sts.amazonaws.com"), optional
//       DurationSeconds (900..43200, default 3600) and Policy (JSON). Replies are text/xml in the
//       namespace https://sts.amazonaws.com/doc/2011-06-15/ with header x-amzn-RequestId.
//       Success 200: AssumeRoleWithWebIdentityResponse > AssumeRoleWithWebIdentityResult >
//       (SubjectFromWebIdentityToken (sub), Audience (aud), AssumedRoleUser > (Arn
//       arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, AssumedRoleId AROA...:SESSION),
//       Credentials > (SessionToken (300 base64 chars), SecretAccessKey (40 of [A-Za-z0-9/+]),
//       Expiration "YYYY-MM-DDTHH:MM:SSZ" (now + DurationSeconds), AccessKeyId ("ASIA" + 16 of
//       [A-Z0-9])), Provider (arn:aws:iam::ACCOUNT:oidc-provider/oidc.awaken.test, or .../
//       example.org for an SVID)), ResponseMetadata > RequestId.
//       Errors: ErrorResponse > (Error > (Type, Code, Message), RequestId), checked in this order:
//         Action missing or not AssumeRoleWithWebIdentity, or Version not 2011-06-15: 400 Sender
//           InvalidAction; RoleArn, RoleSessionName or WebIdentityToken missing: 400 Sender
//           MissingParameter; RoleArn not ^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$: 400 Sender
//           ValidationError; RoleSessionName not [\w+=,.@-]{2,64}, DurationSeconds not an integer
//           in 900..43200, Policy not JSON: 400 Sender InvalidParameterValue.
//         Then ROLE (the last path segment of the role name) is counted, and
//         ROLE "throttled": the first request per RoleSessionName 400 Sender Throttling "Rate
//           exceeded"; ROLE "unavailable": the first request per RoleSessionName 503 Receiver
//           ServiceUnavailable; both succeed afterwards.
//         Token refused: 400 Sender InvalidIdentityToken, or when only expired 400 Sender
//           ExpiredTokenException "Token expired: current date/time NOW must be before the
//           expiration date/time EXP" (epoch seconds).
//         ROLE starting with "denied": 403 Sender AccessDenied "Not authorized to perform
//           sts:AssumeRoleWithWebIdentity"; ROLE "malformed": 200 with the success XML cut off
//           inside Credentials.
//   POST /TENANT/oauth2/v2.0/token  Entra ID v2 token endpoint, a form; errors are
//       {error, error_description:"AADSTSn: ...", error_codes:[n], timestamp, trace_id,
//       correlation_id}, checked in this order: TENANT = AZURE_TENANT_ID, else 400
//       invalid_request AADSTS90002 "Tenant 'TENANT' not found."; grant_type client_credentials,
//       else 400 unsupported_grant_type AADSTS70003; client_id = AZURE_CLIENT_ID, else 400
//       unauthorized_client AADSTS700016; scope ending in "/.default", else 400 invalid_scope
//       AADSTS1002012; client_assertion_type urn:ietf:params:oauth:client-assertion-type:
//       jwt-bearer and a client_assertion for aud "api://AzureADTokenExchange", else 401
//       invalid_client "AADSTS700211: No matching federated identity record found for presented
//       assertion.", but when it is only expired 400 invalid_client "AADSTS700024: Client
//       assertion is not within its valid time range.". 200 {token_type:"Bearer",
//       expires_in:3599, ext_expires_in:3599, access_token:"az-N"}.
//   GET  /last   the last request to any other route (404s included, 413s not): {method, path,
//                headers, body (text)}, or null
//   GET  /stats  {"calls": {ROUTE: count} with ROUTE one of google_sts, google_iam,
//                subject_token, issue, aws_sts, azure_token, not_found; "impersonations":
//                {EMAIL: count}; "aws": {ROLE: count}}
import { createHash, generateKeyPairSync, randomBytes, randomInt, randomUUID } from 'node:crypto';
import http from 'node:http';

import { SignJWT, createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify } from 'jose';

const issuer = 'https://oidc.awaken.test';
const googleAudience = '//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/awaken-pool/'
  + 'providers/awaken-provider';
const azureClientId = '7f1c0c8e-0000-4000-8000-00000000a2ae';
const azureTenantId = 'awaken-tenant';
const issuerKey = generateKeyPairSync('rsa', { modulusLength: 2048 });

const jwksFlag = process.argv.indexOf('--jwks');
const spiffeKeys = jwksFlag > 0 ? createRemoteJWKSet(new URL(process.argv[jwksFlag + 1]), { cooldownDuration: 0 }) : null;

const ksaSub = 'system:serviceaccount:default:awaken';
const issueToken = (aud, ttl = 600, sub = ksaSub) => {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k8s-1', typ: 'JWT' }).setIssuer(issuer)
    .setSubject(sub).setAudience(aud).setIssuedAt(now).setExpirationTime(now + ttl).sign(issuerKey.privateKey);
};

// Verifies an identity token for `audience`: its claims, or throws (jose's JWTExpired when expired).
async function verifyIdentity(token, audience) {
  let iss;
  try { ({ iss } = decodeJwt(token || '')); } catch { throw new Error('not a JWT'); }
  if (iss === issuer) {
    return (await jwtVerify(token, issuerKey.publicKey,
      { issuer, audience, algorithms: ['RS256'], requiredClaims: ['exp'] })).payload;
  }
  if (!spiffeKeys) throw new Error(`unknown issuer ${iss}`);
  const { payload } = await jwtVerify(token, spiffeKeys,
    { audience, algorithms: ['ES256', 'RS256', 'PS256'], requiredClaims: ['exp'] });
  if (!String(payload.sub).startsWith('spiffe://example.org/')) throw new Error('sub is not in example.org');
  return payload;
}
const expired = (e) => e instanceof joseErrors.JWTExpired;
const why = (e) => (e.code ? `${e.code}: ${e.message}` : e.message);

const counters = { sts: 0, ya29: 0, az: 0 };
const stsTokens = new Set();
const stats = { calls: {}, impersonations: {}, aws: {} };
const firstDone = new Set();   // fault keys whose first request has been answered with the fault
const once = (key) => !firstDone.has(key) && firstDone.add(key);
let last = null;

const send = (res, status, type, body, headers = {}) => {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(body);
};
const json = (res, status, body) => send(res, status, 'application/json', JSON.stringify(body));
const rfc3339 = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

// --- Google -------------------------------------------------------------------------------------
async function googleSts(res, form) {
  const bad = (error, error_description) => json(res, 400, { error, error_description });
  const invalid = (name, why = '') => bad('invalid_request', `Invalid value for "${name}".${why}`);
  const oauth = 'urn:ietf:params:oauth:';
  if (form.grant_type !== `${oauth}grant-type:token-exchange`) return invalid('grant_type');
  if (form.requested_token_type !== `${oauth}token-type:access_token`) return invalid('requested_token_type');
  if (form.audience !== googleAudience) {
    return invalid('audience', ' This value should be the full resource name of the Identity Provider.');
  }
  const types = [`${oauth}token-type:jwt`, `${oauth}token-type:id_token`];
  if (!types.includes(form.subject_token_type)) return invalid('subject_token_type');
  if (typeof form.scope !== 'string' || form.scope.trim() === '') return bad('invalid_request', 'Scope(s) must be provided.');
  if (typeof form.subject_token !== 'string' || form.subject_token === '') {
    return bad('invalid_request', 'Missing required parameter: "subject_token".');
  }
  if (form.options !== undefined) {
    try { JSON.parse(form.options); } catch { return invalid('options', ' Not JSON.'); }
  }
  try {
    await verifyIdentity(form.subject_token, googleAudience);
  } catch (e) {
    return bad('invalid_grant', expired(e) ? 'The access token has expired.' : `The subject token is invalid: ${why(e)}`);
  }
  const token = `sts-${++counters.sts}`;
  stsTokens.add(token);
  json(res, 200,
    { access_token: token, issued_token_type: `${oauth}token-type:access_token`, token_type: 'Bearer', expires_in: 3600 });
}

function googleIam(req, res, email, body) {
  const gerr = (code, status, message) => json(res, code, { error: { code, message, status } });
  stats.impersonations[email] = (stats.impersonations[email] || 0) + 1;
  const bearer = /^Bearer (.+)$/.exec(req.headers.authorization || '');
  if (!bearer || !stsTokens.has(bearer[1])) {
    return gerr(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
  }
  if (!email.endsWith('.iam.gserviceaccount.com')) {
    return gerr(403, 'PERMISSION_DENIED', "Permission 'iam.serviceAccounts.getAccessToken' denied");
  }
  let request;
  try { request = JSON.parse(body); } catch { return gerr(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'); }
  const { scope, lifetime = '3600s' } = request || {};
  if (!Array.isArray(scope) || !scope.length || !scope.every((s) => typeof s === 'string' && s)) {
    return gerr(400, 'INVALID_ARGUMENT', 'Scope required.');
  }
  const seconds = /^\d+(\.\d+)?s$/.test(lifetime) ? Math.floor(parseFloat(lifetime)) : NaN;
  if (!(seconds >= 1 && seconds <= 43200)) return gerr(400, 'INVALID_ARGUMENT', `Invalid lifetime "${lifetime}".`);
  if (email.startsWith('flaky-') && once(`iam ${email}`)) {
    return gerr(503, 'UNAVAILABLE', 'The service is currently unavailable.');
  }
  json(res, 200, { accessToken: `ya29.${++counters.ya29}`, expireTime: rfc3339(Date.now() + seconds * 1000) });
}

// --- AWS ----------------------------------------------------------------------------------------
const xmlns = 'https://sts.amazonaws.com/doc/2011-06-15/';
const entities = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => entities[c]);
const pick = (alphabet, n) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join('');
const upperAlnum = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

function awsError(res, status, type, code, message) {
  const id = randomUUID();
  send(res, status, 'text/xml', `<ErrorResponse xmlns="${xmlns}">\n  <Error>\n    <Type>${type}</Type>\n`
    + `    <Code>${code}</Code>\n    <Message>${esc(message)}</Message>\n  </Error>\n  <RequestId>${id}</RequestId>\n`
    + '</ErrorResponse>\n', { 'x-amzn-requestid': id });
}

async function awsSts(res, form) {
  const sender = (code, message) => awsError(res, 400, 'Sender', code, message);
  if (form.Action !== 'AssumeRoleWithWebIdentity' || form.Version !== '2011-06-15') {
    return sender('InvalidAction', `Could not find operation ${form.Action} for version ${form.Version}`);
  }
  for (const p of ['RoleArn', 'RoleSessionName', 'WebIdentityToken']) {
    if (typeof form[p] !== 'string' || form[p] === '') {
      return sender('MissingParameter', `The request must contain the parameter ${p}`);
    }
  }
  const arn = /^arn:aws:iam::(\d{12}):role\/([\w+=,.@/-]+)$/.exec(form.RoleArn);
  if (!arn) return sender('ValidationError', `${form.RoleArn} is invalid`);
  const session = form.RoleSessionName;
  if (!/^[\w+=,.@-]{2,64}$/.test(session)) return sender('InvalidParameterValue', 'RoleSessionName is invalid');
  const duration = form.DurationSeconds === undefined ? 3600 : Number(form.DurationSeconds);
  if (!Number.isInteger(duration) || duration < 900 || duration > 43200) {
    return sender('InvalidParameterValue', `DurationSeconds ${form.DurationSeconds} is not in 900..43200`);
  }
  if (form.Policy !== undefined) {
    try { JSON.parse(form.Policy); } catch { return sender('InvalidParameterValue', 'Policy is not JSON'); }
  }
  const [, account, roleName] = arn;
  const role = roleName.split('/').pop();
  stats.aws[role] = (stats.aws[role] || 0) + 1;
  if (role === 'throttled' && once(`aws ${role} ${session}`)) return sender('Throttling', 'Rate exceeded');
  if (role === 'unavailable' && once(`aws ${role} ${session}`)) {
    return awsError(res, 503, 'Receiver', 'ServiceUnavailable', 'Service is unavailable. Please try again later.');
  }
  let claims;
  try {
    claims = await verifyIdentity(form.WebIdentityToken, 'sts.amazonaws.com');
  } catch (e) {
    if (expired(e)) {
      return sender('ExpiredTokenException', `Token expired: current date/time ${Math.floor(Date.now() / 1000)} `
        + `must be before the expiration date/time ${e.payload.exp}`);
    }
    return sender('InvalidIdentityToken', `The ID Token provided is not valid: ${why(e)}`);
  }
  if (role.startsWith('denied')) {
    return awsError(res, 403, 'Sender', 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
  }
  const roleId = 'AROA' + createHash('sha256').update(form.RoleArn).digest('hex').slice(0, 17).toUpperCase();
  const id = randomUUID();
  const provider = claims.iss === issuer ? 'oidc.awaken.test' : 'example.org';
  const xml = `<AssumeRoleWithWebIdentityResponse xmlns="${xmlns}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>${esc(claims.sub)}</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::${account}:assumed-role/${esc(role)}/${esc(session)}</Arn>
      <AssumedRoleId>${roleId}:${esc(session)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>${randomBytes(225).toString('base64')}</SessionToken>
      <SecretAccessKey>${pick(upperAlnum + 'abcdefghijklmnopqrstuvwxyz/+', 40)}</SecretAccessKey>
      <Expiration>${rfc3339(Date.now() + duration * 1000)}</Expiration>
      <AccessKeyId>ASIA${pick(upperAlnum, 16)}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::${account}:oidc-provider/${provider}</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>${id}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
`;
  send(res, 200, 'text/xml', role === 'malformed' ? xml.slice(0, xml.indexOf('<SecretAccessKey>') + 30) : xml,
    { 'x-amzn-requestid': id });
}

// --- Azure --------------------------------------------------------------------------------------
async function azureToken(res, tenant, form) {
  const aad = (status, error, code, message) => json(res, status, {
    error, error_description: `AADSTS${code}: ${message}`, error_codes: [code], timestamp: new Date().toISOString(),
    trace_id: randomUUID(), correlation_id: randomUUID(),
  });
  if (tenant !== azureTenantId) return aad(400, 'invalid_request', 90002, `Tenant '${tenant}' not found.`);
  if (form.grant_type !== 'client_credentials') {
    return aad(400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.');
  }
  if (form.client_id !== azureClientId) {
    return aad(400, 'unauthorized_client', 700016,
      `Application with identifier '${form.client_id}' was not found in the directory '${tenant}'.`);
  }
  if (typeof form.scope !== 'string' || !form.scope.endsWith('/.default')) {
    return aad(400, 'invalid_scope', 1002012, `The provided value for scope ${form.scope} is not valid. Client `
      + 'credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).');
  }
  const noRecord = () => aad(401, 'invalid_client', 700211,
    'No matching federated identity record found for presented assertion.');
  if (form.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') return noRecord();
  try {
    await verifyIdentity(form.client_assertion, 'api://AzureADTokenExchange');
  } catch (e) {
    if (!expired(e)) return noRecord();
    return aad(400, 'invalid_client', 700024, 'Client assertion is not within its valid time range.');
  }
  json(res, 200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: `az-${++counters.az}` });
}

// --- dispatch -----------------------------------------------------------------------------------
const parseForm = (body) => Object.fromEntries(new URLSearchParams(body));

async function route(req, res, url, body) {
  const { pathname } = url;
  const count = (key) => { stats.calls[key] = (stats.calls[key] || 0) + 1; };
  let path;
  try { path = decodeURIComponent(pathname); } catch { path = pathname; }
  const iam = /^\/v1\/projects\/-\/serviceAccounts\/([^/]+):generateAccessToken$/.exec(path);
  const azure = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(pathname);
  if (req.method === 'POST' && pathname === '/v1/token') {
    count('google_sts');
    let form;
    if ((req.headers['content-type'] || '').startsWith('application/json')) {
      try { form = JSON.parse(body); } catch { form = null; }
      if (!form || typeof form !== 'object') {
        return json(res, 400, { error: 'invalid_request', error_description: 'Invalid JSON payload received.' });
      }
    } else {
      form = parseForm(body);
    }
    return googleSts(res, form);
  }
  if (req.method === 'POST' && iam) {
    count('google_iam');
    return googleIam(req, res, iam[1], body);
  }
  if (req.method === 'GET' && pathname === '/subject-token') {
    count('subject_token');
    if (req.headers['x-subject-token-key'] !== 'awaken') return send(res, 403, 'text/plain', 'forbidden\n');
    const token = await issueToken(googleAudience);
    if (url.searchParams.get('format') === 'json') return json(res, 200, { id_token: token });
    return send(res, 200, 'text/plain', token);
  }
  if (req.method === 'POST' && pathname === '/issue') {
    count('issue');
    const aud = url.searchParams.get('aud');
    const ttl = Number(url.searchParams.get('ttl') ?? 600);
    if (!aud || !Number.isInteger(ttl)) return json(res, 400, { error: 'aud is required and ttl an integer' });
    return send(res, 200, 'text/plain', await issueToken(aud, ttl, url.searchParams.get('sub') || ksaSub));
  }
  if (req.method === 'POST' && pathname === '/') {
    count('aws_sts');
    return awsSts(res, parseForm(body));
  }
  if (req.method === 'POST' && azure) {
    count('azure_token');
    return azureToken(res, decodeURIComponent(azure[1]), parseForm(body));
  }
  count('not_found');
  json(res, 404, { error: 'not_found' });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= 64 * 1024) chunks.push(c);
  });
  req.on('end', () => {
    const url = new URL(req.url, 'http://peer');
    if (req.method === 'GET' && url.pathname === '/last') return json(res, 200, last);
    if (req.method === 'GET' && url.pathname === '/stats') return json(res, 200, stats);
    if (size > 64 * 1024) return json(res, 413, { error: 'request_too_large' });
    const body = Buffer.concat(chunks).toString('utf8');
    last = { method: req.method, path: req.url, headers: req.headers, body };
    route(req, res, url, body).catch((e) => {
      console.error(e);
      if (!res.headersSent) json(res, 500, { error: 'internal' });
    });
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
console.log(JSON.stringify({
  port: server.address().port, issuer, issuer_key: issuerKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
  google_audience: googleAudience, azure_client_id: azureClientId, azure_tenant_id: azureTenantId,
}));
