// JWT-SVIDs and JWT bundles made by npm jose, for cross-checking awaken's SPIFFE validation.
// Prints one JSON line:
//   {"jwks": bundle of example.org, "other_jwks": bundle of other.org, "weak_jwks": a bundle
//    with a 1024-bit RSA key, "valid": {ALG: token signed with ALG for every JWT-SVID alg},
//    "broken": {RULE: token that breaks only RULE}, "now": seconds}
// Every token: sub spiffe://example.org/workload, aud ["svc-a"], exp now + 300, iat now, kid of
// its key, unless its rule says otherwise. The example.org bundle also holds an X.509 key
// (use x509-svid) and an OKP key, which validators must ignore.
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { SignJWT, base64url, exportJWK } from 'jose';

const algs = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
const curve = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };
const keyFor = (alg) => (alg.startsWith('ES')
  ? generateKeyPairSync('ec', { namedCurve: curve[alg] })
  : generateKeyPairSync('rsa', { modulusLength: 2048 }));

const now = Math.floor(Date.now() / 1000);
const keys = Object.fromEntries(algs.map((alg) => [alg, keyFor(alg)]));
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
const okp = generateKeyPairSync('ed25519');
const x509ish = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const jwk = async (k, kid, use = 'jwt-svid') => ({ ...(await exportJWK(k.publicKey)), kid, use });
const kidOf = (alg) => `${alg.toLowerCase()}-kid`;

const jwks = {
  keys: [
    ...(await Promise.all(algs.map((alg) => jwk(keys[alg], kidOf(alg))))),
    await jwk(x509ish, 'x509-authority', 'x509-svid'),
    await jwk(okp, 'okp-authority'),
  ],
  spiffe_sequence: 7,
  spiffe_refresh_hint: 300,
};
const otherJwks = { keys: [await jwk(other, 'other-kid')] };
const weakJwks = { keys: [await jwk(weak, 'weak-kid')] };

const base = { sub: 'spiffe://example.org/workload', aud: ['svc-a'], exp: now + 300, iat: now };
async function sign(alg, key, kid, claims = base, header = {}) {
  const protectedHeader = { alg, typ: 'JWT', ...header };
  if (kid !== null) protectedHeader.kid = kid;
  for (const [k, v] of Object.entries(protectedHeader)) if (v === undefined) delete protectedHeader[k];
  return new SignJWT(Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined)))
    .setProtectedHeader(protectedHeader).sign(key);
}
const es = (claims, header, kid = kidOf('ES256')) => sign('ES256', keys.ES256.privateKey, kid, claims, header);
const unsigned = (header, claims) => `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(claims))}.`;

const valid = Object.fromEntries(await Promise.all(algs.map(async (alg) => [alg, await sign(alg, keys[alg].privateKey, kidOf(alg))])));
const broken = {
  alg_none: unsigned({ alg: 'none', kid: kidOf('ES256') }, base),
  alg_hs256_with_public_key: await new SignJWT(base).setProtectedHeader({ alg: 'HS256', kid: kidOf('RS256') })
    .sign(new TextEncoder().encode(keys.RS256.publicKey.export({ type: 'spki', format: 'pem' }))),
  typ_wrong: await es(base, { typ: 'at+jwt' }),
  kid_missing: await es(base, {}, null),
  kid_unknown: await es(base, {}, 'no-such-kid'),
  sub_missing: await es({ ...base, sub: undefined }),
  sub_not_spiffe: await es({ ...base, sub: 'https://example.org/workload' }),
  sub_other_trust_domain: await sign('ES256', other.privateKey, 'other-kid', { ...base, sub: 'spiffe://other.org/workload' }),
  sub_unknown_trust_domain: await es({ ...base, sub: 'spiffe://unknown.org/workload' }),
  key_of_another_trust_domain: await sign('ES256', other.privateKey, 'other-kid'),
  signed_by_stranger: await sign('ES256', stranger.privateKey, kidOf('ES256')),
  alg_does_not_fit_key: await sign('ES256', keys.ES256.privateKey, kidOf('RS256')),
  exp_missing: await es({ ...base, exp: undefined }),
  exp_past: await es({ ...base, exp: now - 120, iat: now - 400 }),
  nbf_future: await es({ ...base, nbf: now + 120 }),
  iat_future: await es({ ...base, iat: now + 120 }),
  aud_missing: await es({ ...base, aud: undefined }),
  aud_empty_array: await es({ ...base, aud: [] }),
  aud_empty_string: await es({ ...base, aud: '' }),
  aud_wrong: await es({ ...base, aud: ['svc-b', 'svc-c'] }),
  aud_too_many: await es({ ...base, aud: Array.from({ length: 33 }, (_, i) => `svc-${i}`) }),
  // jose refuses to sign with a key under 2048 bits, so this one is signed by node:crypto.
  signed_by_weak_key: (() => {
    const input = unsigned({ alg: 'RS256', typ: 'JWT', kid: 'weak-kid' }, base).slice(0, -1);
    return `${input}.${base64url.encode(cryptoSign('sha256', Buffer.from(input), weak.privateKey))}`;
  })(),
};
const edge = {
  exp_within_leeway: await es({ ...base, exp: now - 30, iat: now - 330 }),
  nbf_within_leeway: await es({ ...base, nbf: now + 30 }),
  typ_jose: await es(base, { typ: 'JOSE' }),
  typ_absent: await es(base, { typ: undefined }),
  aud_string: await es({ ...base, aud: 'svc-a' }),
  aud_several: await es({ ...base, aud: ['svc-b', 'svc-a'] }),
};

console.log(JSON.stringify({ now, jwks: JSON.stringify(jwks), other_jwks: JSON.stringify(otherJwks),
  weak_jwks: JSON.stringify(weakJwks), valid, broken, edge }));
