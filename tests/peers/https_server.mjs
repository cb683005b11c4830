// HTTPS (HTTP/2 and HTTP/1.1) and plain HTTP test peer with a CA made at start-up.
//   node https_server.mjs DIR
// Writes DIR/ca.pem (the trusted test CA) and prints one JSON line when ready:
//   {"https_port":N,"http_port":N,"wrong_name_port":N,"ca_file":"DIR/ca.pem"}
// Routes (any method):
//   /hello               200 "hello"
//   /echo                200 JSON {method, url, headers, body}
//   /status/CODE         CODE with body "status CODE"; ?retry_after=S adds Retry-After
//   /delay/MS            200 "late" after MS milliseconds
//   /bytes/N             200 with N bytes of "x"
//   /headers/N           200 with N header fields of 1 KiB each
//   /trailers            200 chunked body "abc" with trailer x-check: done (HTTP/1.1)
import http from 'node:http';
import http2 from 'node:http2';

import { makeTestCa } from './test_ca.mjs';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: https_server.mjs DIR');
  process.exit(2);
}
const ca = makeTestCa(dir);

function handler(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://peer');
    const parts = url.pathname.split('/').filter(Boolean);
    const body = Buffer.concat(chunks).toString('utf8');
    switch (parts[0]) {
      case 'hello':
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('hello');
      case 'echo':
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body,
          http_version: req.httpVersion }));
      case 'status': {
        const code = Number(parts[1]);
        const headers = { 'content-type': 'text/plain' };
        if (url.searchParams.has('retry_after')) headers['retry-after'] = url.searchParams.get('retry_after');
        res.writeHead(code, headers);
        return res.end(`status ${code}`);
      }
      case 'delay':
        return setTimeout(() => { res.writeHead(200); res.end('late'); }, Number(parts[1]));
      case 'bytes':
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        return res.end(Buffer.alloc(Number(parts[1]), 'x'));
      case 'headers': {
        const headers = {};
        for (let i = 0; i < Number(parts[1]); i++) headers[`x-filler-${i}`] = 'y'.repeat(1024);
        res.writeHead(200, headers);
        return res.end('ok');
      }
      case 'trailers':
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-check' });
        res.write('abc');
        res.addTrailers({ 'x-check': 'done' });
        return res.end();
      default:
        res.writeHead(404);
        return res.end('not found');
    }
  });
}

const tls = { key: ca.key, cert: ca.cert, allowHTTP1: true };
const listen = (server, host) => new Promise((resolve) => server.listen(0, host, () => resolve(server.address().port)));

const https_port = await listen(http2.createSecureServer(tls, handler), '127.0.0.1');
const wrong_name_port = await listen(http2.createSecureServer(tls, handler), '127.0.0.2');
const http_port = await listen(http.createServer(handler), '127.0.0.1');
console.log(JSON.stringify({ https_port, http_port, wrong_name_port, ca_file: ca.caFile }));
