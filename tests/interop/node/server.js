// Test backend for tests/interop/http_test.sh: Node's own HTTP/1.1 server plus a WebSocket echo
// server from the npm `ws` package, on one port.
//
//   node server.js HOST PORT        serve
//   node server.js pattern MIB      write the /big pattern (MIB MiB) to stdout
//
// Routes (the first path segment selects the route, so /echo/anything is /echo; every request
// gets its own path and the access log can be matched path by path):
//   /echo      reads the body, answers JSON {method, url, httpVersion, headers, rawHeaders,
//              bytes, sha256, remote, trailers}
//   /headers   the same without reading a body
//   /sse       text/event-stream: events 0..5 every 200 ms (the first at once), then ends; each
//              event carries the time it was written (ms since the epoch)
//   /big       ?mb=N streams N MiB of the pattern (Content-Length; ?chunked=1 for chunked);
//              ?tag=T records the bytes written so far under T in /stats
//   /reset     promises 1 MiB (or chunked with ?chunked=1), writes 64 KiB, then resets the socket
//   /redirect  302 to http://<own listen address>/landed (with a short body)
//   /slow      ?ms=N waits N ms, then answers "slow done"; with ?tag=T, /stats gone[T] says
//              whether the connection closed after the answer ("answered") or before it
//              ("abandoned": the proxy gave up on the request)
//   /early     103 Early Hints (a Link field), then 200 "final"
//   /trailers  a chunked body "part one\npart two\n" with the trailer X-Checksum: abc123
//   /status    ?code=N&len=L answers status N with an L-byte body (no body for 204 and 304)
//   /stats     {conns: {remote: n}, reqs: {remote: n}, big: {tag: bytes}, gone: {tag: how}}
//              (connections and requests counted per remote address)
//   /dropidle  closes the idle keep-alive connections (the proxy's pooled ones)
//   /ws        (any /ws/... path) WebSocket echo (text and binary; a close is answered with the same code)
'use strict';
const http = require('http');
const crypto = require('crypto');

const MIB = 1 << 20;

// One deterministic 1 MiB block (SHA-256 in counter mode); the pattern repeats it.
function patternBlock() {
    const b = Buffer.alloc(MIB);
    for (let i = 0; i < MIB / 32; i++) {
        crypto.createHash('sha256').update('nbproxy-pattern-' + i).digest().copy(b, i * 32);
    }
    return b;
}

if (process.argv[2] === 'pattern') {
    const block = patternBlock();
    let left = Number(process.argv[3]);
    const out = process.stdout;
    const pump = () => {
        while (left > 0) {
            left--;
            if (!out.write(block)) {
                out.once('drain', pump);
                return;
            }
        }
    };
    pump();
    return;
}

const host = process.argv[2];
const port = Number(process.argv[3]);
const block = patternBlock();
const stats = { conns: {}, reqs: {}, big: {}, gone: {} };
const bump = (m, k) => { m[k] = (m[k] || 0) + 1; };

function json(res, code, obj) {
    const body = Buffer.from(JSON.stringify(obj) + '\n');
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    res.end(body);
}

function describe(req) {
    return {
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        remote: req.socket.remoteAddress,
    };
}

function bigStream(req, res, q) {
    const mb = Number(q.get('mb') || '1');
    const tag = q.get('tag');
    const chunked = q.get('chunked') === '1';
    const hdrs = { 'Content-Type': 'application/octet-stream' };
    if (!chunked) hdrs['Content-Length'] = mb * MIB;
    res.writeHead(200, hdrs);
    let left = mb;
    const pump = () => {
        while (left > 0) {
            left--;
            if (!res.write(block)) {
                res.once('drain', pump);
                return;
            }
        }
        res.end();
    };
    if (tag) {
        // Keep the figure honest while the socket is blocked: bytes this response handed to the
        // socket (its counter spans every response of a keep-alive connection).
        const base = req.socket.bytesWritten;
        const t = setInterval(() => { stats.big[tag] = req.socket.bytesWritten - base; }, 100);
        res.on('close', () => clearInterval(t));
    }
    pump();
}

const server = http.createServer((req, res) => {
    bump(stats.reqs, req.socket.remoteAddress);
    const u = new URL(req.url, 'http://x');
    const route = u.pathname.split('/')[1];
    switch (route) {
    case 'echo': {
        const h = crypto.createHash('sha256');
        let n = 0;
        req.on('data', (d) => { h.update(d); n += d.length; });
        req.on('end', () => json(res, 200, { ...describe(req), bytes: n, sha256: h.digest('hex'),
            trailers: req.trailers }));
        req.on('error', () => {});
        return;
    }
    case 'headers':
        return json(res, 200, describe(req));
    case 'sse': {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
        let i = 0;
        const tick = () => {
            res.write(`id: ${i}\ndata: {"i":${i},"sent":${Date.now()}}\n\n`);
            if (++i > 5) {
                res.end();
                return;
            }
            setTimeout(tick, 200);
        };
        tick();
        return;
    }
    case 'big':
        return bigStream(req, res, u.searchParams);
    case 'reset': {
        const chunked = u.searchParams.get('chunked') === '1';
        const hdrs = { 'Content-Type': 'application/octet-stream' };
        if (!chunked) hdrs['Content-Length'] = MIB;
        res.writeHead(200, hdrs);
        res.write(block.subarray(0, 64 * 1024));
        setTimeout(() => req.socket.resetAndDestroy(), 150);
        return;
    }
    case 'redirect': {
        const body = 'see /landed\n';
        res.writeHead(302, { Location: `http://${host}:${port}/landed`, 'Content-Length': body.length });
        res.end(body);
        return;
    }
    case 'slow': {
        const ms = Number(u.searchParams.get('ms') || '1000');
        const tag = u.searchParams.get('tag');
        if (tag) res.on('close', () => { stats.gone[tag] = res.writableFinished ? 'answered' : 'abandoned'; });
        setTimeout(() => {
            if (res.destroyed) return;
            res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
            res.end('slow done\n');
        }, ms);
        return;
    }
    case 'status': {
        // ?code=N&len=L: status N with an L-byte body (none for 204 and 304).
        const code = Number(u.searchParams.get('code') || '200');
        const len = Number(u.searchParams.get('len') || '0');
        if (code === 204 || code === 304) res.writeHead(code);
        else res.writeHead(code, { 'Content-Type': 'text/plain', 'Content-Length': len });
        res.end(code === 204 || code === 304 ? undefined : 'x'.repeat(len));
        return;
    }
    case 'early':
        // 103 Early Hints, then the response.
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        setTimeout(() => {
            res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 6 });
            res.end('final\n');
        }, 50);
        return;
    case 'trailers':
        // A chunked body with a trailer field.
        res.writeHead(200, { 'Content-Type': 'text/plain', Trailer: 'X-Checksum' });
        res.write('part one\n');
        setTimeout(() => {
            res.write('part two\n');
            res.addTrailers({ 'X-Checksum': 'abc123' });
            res.end();
        }, 50);
        return;
    case 'stats':
        return json(res, 200, stats);
    case 'dropidle':
        // Closes every keep-alive connection that is not inside a request (this one is).
        res.on('finish', () => server.closeIdleConnections());
        return json(res, 200, { dropped: true });
    default:
        return json(res, 404, { error: 'no such route', url: req.url });
    }
});
server.on('connection', (s) => bump(stats.conns, s.remoteAddress));
server.keepAliveTimeout = 60000;
server.headersTimeout = 70000;
server.requestTimeout = 0;

const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * MIB });
server.on('upgrade', (req, socket, head) => {
    bump(stats.reqs, req.socket.remoteAddress);
    if (new URL(req.url, 'http://x').pathname.split('/')[1] !== 'ws') {
        socket.destroy();
        return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('close', (code, reason) => {
        if (ws.readyState !== ws.CLOSED) ws.close(code, reason);
    });
    ws.on('error', () => {});
});

server.listen(port, host, () => console.log(`listening on ${host}:${port}`));
process.on('SIGTERM', () => process.exit(0));
