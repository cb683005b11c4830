// A TLS stack awaken did not write (node's tls, on OpenSSL of its own build), for interop with
// awaken's SPIFFE (m)TLS contexts, from PEM files such as `awaken-spiffe fetch-x509 --write`.
//   node tls_peer.mjs server CERT KEY CA      mTLS server on 127.0.0.1, trusting only CA; prints
//                                             {"port":N}, then one line per handshake:
//                                             {"authorized":bool,"peer":URI SAN,"error":text}
//                                             and echoes each authorized connection's bytes
//   node tls_peer.mjs client PORT CERT KEY CA mTLS client; sends "ping\n" and prints one line:
//                                             {"authorized":bool,"peer":URI SAN,"echo":text,
//                                              "error":text}
// SPIFFE peers have no host name: the client checks the chain against CA, not the name.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const [mode, ...rest] = process.argv.slice(2);
const uriSan = (cert) => (cert?.subjectaltname ?? '').split(', ').find((s) => s.startsWith('URI:'))?.slice(4) ?? null;
const say = (o) => console.log(JSON.stringify(o));

if (mode === 'server') {
  const [cert, key, ca] = rest.map((f) => readFileSync(f));
  const server = tls.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
    (socket) => {
      say({ authorized: socket.authorized, peer: uriSan(socket.getPeerCertificate()),
        error: socket.authorizationError ? String(socket.authorizationError) : null });
      if (!socket.authorized) return socket.destroy();
      socket.pipe(socket);
    });
  server.on('tlsClientError', (e) => say({ authorized: false, peer: null, error: e.message }));
  server.listen(0, '127.0.0.1', () => say({ port: server.address().port }));
} else if (mode === 'client') {
  const [port, ...files] = rest;
  const [cert, key, ca] = files.map((f) => readFileSync(f));
  const socket = tls.connect({ host: '127.0.0.1', port: Number(port), cert, key, ca, checkServerIdentity: () => undefined,
    minVersion: 'TLSv1.2' });
  let echo = '';
  socket.on('secureConnect', () => socket.write('ping\n'));
  socket.on('data', (d) => {
    echo += d.toString();
    if (echo.includes('\n')) {
      say({ authorized: socket.authorized, peer: uriSan(socket.getPeerCertificate()), echo: echo.trim(), error: null });
      socket.end();
      process.exit(0);
    }
  });
  socket.on('error', (e) => {
    say({ authorized: false, peer: null, echo: null, error: e.message });
    process.exit(0);
  });
} else {
  console.error('usage: tls_peer.mjs server CERT KEY CA | client PORT CERT KEY CA');
  process.exit(2);
}
