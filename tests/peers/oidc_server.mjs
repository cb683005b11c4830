// An OpenID provider (npm oidc-provider) on plain HTTP at 127.0.0.1 with the clients awaken's
// minters need. Prints one JSON line when ready:
//   {"issuer":URL, "token_endpoint":URL, "keys":{"rs256":PEM, "ps256":PEM, "es256":PEM,
//    "wrong":PEM, "sa":PEM}, "sa_email":EMAIL}
// Clients (all limited to the client_credentials grant and the scopes api:read api:write):
//   awaken-basic / awaken-post     client_secret_basic / client_secret_post, secret "s3cret-value"
//   awaken-rs256, -ps256, -es256   private_key_jwt, each with its own key and signing algorithm
// The JWT-bearer grant (RFC 7523 section 2.1) is registered for Google-style service-account
// assertions that carry no client authentication: the assertion must be RS256, signed by the
// "sa" key, iss = SA_EMAIL, aud = the token endpoint, a non-empty scope, exp - iat <= 3600.
// Access tokens are opaque and live 600 s (expires_in).
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import querystring from 'node:querystring';

import { jwtVerify } from 'jose';

// The provider's notices about running as a development server (in-memory adapter, dev keys,
// Node version, the body parsed below) are expected for a test peer: keep stdout for the ready
// line and stderr for real errors.
for (const level of ['info', 'warn']) {
  const original = console[level];
  console[level] = (...args) => { if (!String(args[0]).startsWith('oidc-provider ')) original(...args); };
}

// Imported once the filter is in place: the module warns as it loads.
const { default: Provider, errors } = await import('oidc-provider');

const jwtBearer = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const saEmail = 'minter@awaken-test.iam.gserviceaccount.com';
const saClient = 'google-service-accounts';

const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const keys = {
  rs256: rsa(), ps256: rsa(), es256: generateKeyPairSync('ec', { namedCurve: 'P-256' }), wrong: rsa(), sa: rsa(),
};
const pem = (k) => k.privateKey.export({ type: 'pkcs8', format: 'pem' });
const jwk = (k, kid) => ({ ...k.publicKey.export({ format: 'jwk' }), kid });

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const common = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api:read api:write' };
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
  ],
  scopes: ['api:read', 'api:write'],
  features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false } },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
  ttl: { ClientCredentials: 600 },
  routes: { token: '/token' },
});
provider.proxy = false;

provider.registerGrantType(jwtBearer, async (ctx) => {
  let payload;
  try {
    ({ payload } = await jwtVerify(ctx.oidc.params.assertion || '', keys.sa.publicKey,
      { algorithms: ['RS256'], issuer: saEmail, audience: provider.urlFor('token'), requiredClaims: ['exp', 'iat'] }));
  } catch (e) {
    throw new errors.InvalidGrant(`assertion refused: ${e.code || e.message}`);
  }
  if (typeof payload.scope !== 'string' || payload.scope === '') throw new errors.InvalidGrant('assertion has no scope');
  if (payload.exp - payload.iat > 3600) throw new errors.InvalidGrant('assertion lives longer than an hour');
  const token = new provider.ClientCredentials({ client: ctx.oidc.client, scope: payload.scope });
  ctx.body = { access_token: await token.save(), token_type: 'Bearer', expires_in: token.expiration, scope: payload.scope };
}, ['assertion']);

// A service-account assertion authenticates no client: name the public client that the grant is
// registered for, so the provider's client lookup succeeds.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += chunk.length;
      if (size > 64 * 1024) ctx.throw(413);
      chunks.push(chunk);
    }
    const form = querystring.parse(Buffer.concat(chunks).toString('utf8'));
    if (form.grant_type === jwtBearer && form.client_id === undefined && !ctx.get('authorization')) form.client_id = saClient;
    ctx.request.body = form;
  }
  await next();
});

server.on('request', provider.callback());
console.log(JSON.stringify({
  issuer, token_endpoint: provider.urlFor('token'), sa_email: saEmail,
  keys: Object.fromEntries(Object.entries(keys).map(([name, k]) => [name, pem(k)])),
}));
