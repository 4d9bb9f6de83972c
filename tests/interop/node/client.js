// Test clients for tests/interop/http_test.sh (Node core + the npm `ws` package).
//
//   node client.js ws URL HOST N     WebSocket echo: N messages of varied sizes (text and binary)
//                                    sent one at a time, each must come back identical; then a
//                                    close with code 1000. Prints JSON
//                                    {ok, sent, matched, bytes, closeCode, error}.
//   node client.js wshold URL HOST   one echo, then waits for the server side to close; prints
//                                    JSON {echoed, closeCode, closedAt} (stderr says "echoed")
//   node client.js sse URL HOST      GET an event stream; prints JSON {status, events:
//                                    [{i, sent, at}], start} where `at` is the arrival time of
//                                    the event's bytes and `sent` the time the backend wrote it.
'use strict';
const http = require('http');
const crypto = require('crypto');

const [mode, url, host] = process.argv.slice(2);
const deadline = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: 'client deadline (20 s) passed' }));
    process.exit(1);
}, 20000);

function done(obj) {
    clearTimeout(deadline);
    console.log(JSON.stringify(obj));
    process.exit(obj.ok === false ? 1 : 0);
}

if (mode === 'ws') {
    const WebSocket = require('ws');
    const n = Number(process.argv[5] || '100');
    // Sizes cross the 7-bit, 16-bit and 64-bit frame-length encodings and the proxy's buffers.
    const sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537, 200000, 1 << 20];
    const msgs = [];
    for (let i = 0; i < n; i++) {
        const size = i < sizes.length ? sizes[i] : (i * 7919) % 70000;
        if (i % 2 === 0) {
            msgs.push({ binary: true, data: crypto.createHash('sha256').update(String(i)).digest()
                .toString('hex').repeat(Math.ceil(size / 64) + 1).slice(0, size) });
            msgs[i].data = Buffer.from(msgs[i].data);
        } else {
            msgs.push({ binary: false, data: `msg ${i} `.padEnd(size, 'é').slice(0, size) });
        }
    }
    const ws = new WebSocket(url, { headers: { Host: host }, perMessageDeflate: false });
    let i = 0;
    let matched = 0;
    let bytes = 0;
    let failure = null;
    const sendNext = () => ws.send(msgs[i].data, { binary: msgs[i].binary });
    ws.on('open', sendNext);
    ws.on('message', (data, isBinary) => {
        const want = msgs[i];
        const same = isBinary === want.binary &&
            (isBinary ? Buffer.compare(data, want.data) === 0 : data.toString() === want.data);
        if (same) {
            matched++;
            bytes += data.length;
        } else if (!failure) {
            failure = `message ${i} differs (binary ${isBinary}, ${data.length} bytes)`;
        }
        if (++i < n) sendNext();
        else ws.close(1000, 'bye');
    });
    ws.on('close', (code) => done({ ok: !failure && matched === n && code === 1000, sent: i,
        matched, bytes, closeCode: code, error: failure }));
    ws.on('error', (e) => done({ ok: false, sent: i, matched, error: String(e) }));
} else if (mode === 'wshold') {
    // One echo, then keep the connection open until the other side closes it.
    const WebSocket = require('ws');
    const ws = new WebSocket(url, { headers: { Host: host }, perMessageDeflate: false });
    let echoed = false;
    ws.on('open', () => ws.send('hold'));
    ws.on('message', (d) => {
        echoed = d.toString() === 'hold';
        console.error('echoed'); // the caller waits for this line before it goes on
    });
    ws.on('close', (code) => done({ echoed, closeCode: code, closedAt: Date.now() }));
    ws.on('error', (e) => done({ ok: false, echoed, error: String(e), closedAt: Date.now() }));
} else if (mode === 'sse') {
    const start = Date.now();
    const events = [];
    const req = http.get(url, { headers: { Host: host, Accept: 'text/event-stream' } }, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
            const at = Date.now();
            buf += d;
            let k;
            while ((k = buf.indexOf('\n\n')) >= 0) {
                const ev = buf.slice(0, k);
                buf = buf.slice(k + 2);
                const m = /^data: (.*)$/m.exec(ev);
                if (m) events.push({ ...JSON.parse(m[1]), at });
            }
        });
        res.on('end', () => done({ status: res.statusCode, start, events }));
    });
    req.on('error', (e) => done({ ok: false, error: String(e), start, events }));
} else {
    done({ ok: false, error: `unknown mode ${mode}` });
}
