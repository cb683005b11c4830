// Independent JWS peer for the awaken JOSE tests, built on the npm `jose` package.
//
//   node jose_vectors.mjs generate OUTFILE
//     For each of RS/PS/ES 256/384/512: a fresh key pair, its public JWK, its PKCS#8 private PEM
//     and a compact JWS signed by jose. Writes [{alg, jwk, pkcs8, token}] to OUTFILE and prints
//     {"ok":true,...} on one line.
//
//   node jose_vectors.mjs verify INFILE
//     INFILE holds [{alg, jwk, token, expect}]. Verifies each token with jose, restricted to its
//     alg, and prints {"ok":true,"results":[{index, ok, error?}]} on one line. `expect` is only
//     echoed back; the caller compares.
import { readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import {
  CompactSign, compactVerify, exportJWK, exportPKCS8, generateKeyPair, importJWK,
} from 'jose';

const ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512',
];

function modulusLengthFor(alg) {
  return alg.endsWith('256') ? 2048 : 3072;
}

async function generate(outfile) {
  const vectors = [];
  for (const alg of ALGORITHMS) {
    const options = { extractable: true };
    if (!alg.startsWith('ES')) options.modulusLength = modulusLengthFor(alg);
    const { publicKey, privateKey } = await generateKeyPair(alg, options);
    const jwk = await exportJWK(publicKey);
    const pkcs8 = await exportPKCS8(privateKey);
    const payload = JSON.stringify({
      iss: 'jose-peer',
      sub: alg,
      nonce: randomBytes(12).toString('base64url'),
      iat: Math.floor(Date.now() / 1000),
    });
    const token = await new CompactSign(new TextEncoder().encode(payload))
      .setProtectedHeader({ alg, typ: 'JWT', kid: `peer-${alg}` })
      .sign(privateKey);
    vectors.push({ alg, jwk, pkcs8, token });
  }
  await writeFile(outfile, JSON.stringify(vectors));
  process.stdout.write(JSON.stringify({ ok: true, count: vectors.length }) + '\n');
}

async function verify(infile) {
  const items = JSON.parse(await readFile(infile, 'utf8'));
  const results = [];
  for (const [index, item] of items.entries()) {
    try {
      const key = await importJWK(item.jwk, item.alg);
      await compactVerify(item.token, key, { algorithms: [item.alg] });
      results.push({ index, ok: true, expect: item.expect });
    } catch (err) {
      results.push({ index, ok: false, expect: item.expect, error: err.code ?? err.name });
    }
  }
  process.stdout.write(JSON.stringify({ ok: true, results }) + '\n');
}

const [mode, file] = process.argv.slice(2);
try {
  if (mode === 'generate' && file) await generate(file);
  else if (mode === 'verify' && file) await verify(file);
  else {
    process.stderr.write('usage: jose_vectors.mjs generate OUTFILE | verify INFILE\n');
    process.exit(2);
  }
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + '\n');
  process.exit(1);
}
