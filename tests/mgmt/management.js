// SPDX-License-Identifier: BSD-3-Clause
//
// A management server double for nbproxy's management mode (tests/interop/mgmt_test.sh,
// bench/mgmt_snapshot.sh): NetBird management's ProxyService as spec/proxy.md §2, §3.2 and
// Appendix B describe it, on @grpc/grpc-js, loading OUR mgmt/proxy_service.proto. It stands in
// for NetBird's management, so it follows the spec to the letter and records everything it sees.
//
//   node management.js --mint
//       prints a fresh proxy access token (nbx_ + 30 base62 + 6-char base62 CRC32) and exits
//   node management.js [options]
//       --port N             gRPC port on 127.0.0.1 (0 = random, the default); a fixed port lets a
//                            "restarted" management come back where it was
//       --control-port N     the control HTTP server on 127.0.0.1 (0 = random)
//       --token T            a valid proxy access token (repeatable); tokens can also be added at
//                            run time (POST /tokens)
//       --services FILE      JSON list of services (below)
//       --batch N            snapshot batch size (default NB_PROXY_SNAPSHOT_BATCH_SIZE or 500)
//       --queue N            per-connection send queue (default 100; overflow disconnects)
//       --sync-unimplemented SyncMappings answers UNIMPLEMENTED (pre-SyncMappings management)
//       --auth-fail-limit N  failed authentications per client IP per minute (burst N) before
//                            RESOURCE_EXHAUSTED (default 5; 0 = no limiter)
//       --hold-snapshot      accept mapping streams but send no snapshot until POST /hold
//                            {on: false} (readiness before the snapshot)
//       --pause-after N      SyncMappings: after the ack of snapshot batch N (0-based) send
//                            nothing more until POST /hold {on: false} (to look at the proxy
//                            between two batches)
//       --lean               record SendStatusUpdate and SendAccessLog calls only in `statuses`
//                            and `access_logs` (not in `rpcs` with their metadata): a cheaper
//                            double for benchmarks
//       --record FILE        also append every record as one JSON line to FILE
//       --refuse             no gRPC at all: a TCP listener on --port that records every
//                            connection attempt and closes it at once (to time a client's
//                            reconnect backoff while "management is down")
//   prints "PORT <grpc port>" and "CONTROL <control port>" once listening; stop it by PID
//   (SIGTERM).
//
// A service is a ProxyMapping as JSON (the .proto's field names: id, account_id, domain, mode,
// listen_port, path [{path, target, options}], auth, pass_host_header, rewrite_redirects,
// access_restrictions, private), without type and auth_token (the double sets both), plus:
//   enabled  (default true)  disabled services are never shipped
//   cluster  (optional)      shipped only to proxies whose address equals it (absent: all)
//
// Management behaviour implemented (spec/proxy.md §2.1, §2.3, §3.2, Appendix B):
//   - auth interceptor on every /management.ProxyService/ method: `authorization: Bearer <tok>`,
//     token format nbx_ + 30 base62 + 6-char base62 CRC32-IEEE checksum (length 40), else
//     UNAUTHENTICATED "invalid token format"; unknown token UNAUTHENTICATED "invalid token";
//     per-IP failure limiter (5/min, burst 5) -> RESOURCE_EXHAUSTED;
//   - connect: proxy_id required, address an IP or a valid domain (INVALID_ARGUMENT);
//     SyncMappings' first message must be init (INVALID_ARGUMENT);
//   - snapshot: every shipped service as a full CREATED mapping with a fresh one-time token, in
//     batches of --batch, the last with initial_sync_complete (an empty snapshot is one message
//     with only the flag); SyncMappings waits for an ack after each snapshot batch, then sends
//     incremental updates without waiting and discards their acks; GetMappingUpdate sends the
//     same batches without acks;
//   - one-time tokens: 32 random bytes, URL-safe base64 with padding, stored as SHA-256 hex with
//     {account, service, expiry 5 min}; CreateProxyPeer consumes one and must match account AND
//     service (else UNAUTHENTICATED); REMOVED carries none;
//   - CreateProxyPeer idempotent on the WireGuard public key; records the peer;
//   - per-connection send queue (100): overflow disconnects the proxy (it resyncs); a newer
//     connection with the same proxy_id cancels the older one;
//   - SendStatusUpdate: service_id and account_id required (INVALID_ARGUMENT); unknown service
//     (id and account) NOT_FOUND; records status, certificate_issued, error_message;
//   - shipping (§2.3): only enabled services of the proxy's cluster; private ones only to proxies
//     advertising supports_private_service; custom-port L4 ones (listen_port != 0, mode != tls)
//     only to proxies that sent supports_custom_ports; REMOVED always;
//   - SendAccessLog: records; every other RPC: UNIMPLEMENTED (recorded).
//
// Control interface (JSON over HTTP on 127.0.0.1:<control port>):
//   GET  /state                      everything recorded (see `rec` below); ?since=<ms> filters
//                                    the time-stamped lists
//   POST /services   [svc, ...]      replace the whole service set (nothing is pushed: a
//                                    reconnecting proxy gets it in its next snapshot)
//   POST /update     {op, service} | {op, services}
//                                    op create|modify|remove: change the set and push one
//                                    incremental message per service to every connected proxy
//   POST /push       {mappings: [...], token: true}
//                                    one raw message with these ProxyMappings (type as given,
//                                    default CREATED; a fresh one-time token for each non-REMOVED
//                                    mapping without one unless token is false); the set is not
//                                    touched (malformed mappings, batches of several)
//   POST /drop       {how: "transport"|"stream"}
//                                    disconnect every proxy: destroy the HTTP/2 sessions (TCP), or
//                                    end the mapping streams with UNAVAILABLE
//   POST /silence    {on: true|false, streams: true|false}
//                                    stop answering: RPCs are recorded and never answered, and
//                                    (unless streams is false) mapping streams get nothing
//   POST /hold       {on: true|false} hold the snapshot of new mapping streams; off sends the
//                                    held snapshots (built from the service set at that time)
//                                    and resumes snapshots paused by --pause-after
//   POST /tokens     {add: T} | {revoke: T} | {mint: true}
//                                    (revoking also disconnects the streams opened with T)
//   POST /reset                      clear the records
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const http2 = require('http2');
const net = require('net');
const path = require('path');

// ---- arguments ----
const argv = process.argv.slice(2);
const opt = { port: 0, controlPort: 0, tokens: [], batch: Number(process.env.NB_PROXY_SNAPSHOT_BATCH_SIZE) || 500,
  queue: 100, syncUnimplemented: false, authFailLimit: 5, record: null, services: null, refuse: false, mint: false,
  hold: false, lean: false, pauseAfter: -1, tlsCert: null, tlsKey: null };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    return argv[++i];
  };
  switch (a) {
    case '--mint': opt.mint = true; break;
    case '--port': opt.port = Number(val()); break;
    case '--control-port': opt.controlPort = Number(val()); break;
    case '--token': opt.tokens.push(val()); break;
    case '--services': opt.services = val(); break;
    case '--batch': opt.batch = Number(val()); break;
    case '--queue': opt.queue = Number(val()); break;
    case '--sync-unimplemented': opt.syncUnimplemented = true; break;
    case '--auth-fail-limit': opt.authFailLimit = Number(val()); break;
    case '--record': opt.record = val(); break;
    case '--refuse': opt.refuse = true; break;
    case '--hold-snapshot': opt.hold = true; break;
    case '--lean': opt.lean = true; break;
    case '--pause-after': opt.pauseAfter = Number(val()); break;
    case '--tls-cert': opt.tlsCert = val(); break; // PEM chain: serve gRPC over TLS (grpc-js, ALPN h2)
    case '--tls-key': opt.tlsKey = val(); break;
    default: usage(`unknown argument ${a}`);
  }
}
function usage(msg) {
  console.error(`management.js: ${msg}\nusage: node management.js --mint | [--port N] [--control-port N] ` +
    '[--token T]... [--services FILE] [--batch N] [--queue N] [--sync-unimplemented] [--auth-fail-limit N] ' +
    '[--hold-snapshot] [--pause-after N] [--lean] [--record FILE] [--refuse] [--tls-cert PEM --tls-key PEM]');
  process.exit(2);
}
if (!(opt.batch >= 1) || !(opt.queue >= 1) || !(opt.port >= 0) || !(opt.controlPort >= 0)) usage('bad number');

// ---- proxy access tokens (management/server/types/proxy_access_token.go) ----
const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function base62(n) {
  if (n === 0) return '0';
  let s = '';
  while (n > 0) { s = B62[n % 62] + s; n = Math.floor(n / 62); }
  return s;
}
function tokenChecksum(secret) { return base62(crc32(Buffer.from(secret))).padStart(6, '0'); }
function mintToken() {
  let secret = '';
  for (let i = 0; i < 30; i++) secret += B62[crypto.randomInt(62)];
  return 'nbx_' + secret + tokenChecksum(secret);
}
function tokenFormatValid(t) {
  if (typeof t !== 'string' || !t.startsWith('nbx_') || t.length !== 40) return false;
  const secret = t.slice(4, 34);
  return t.slice(34) === tokenChecksum(secret);
}
const hashToken = (t) => crypto.createHash('sha256').update(t).digest('base64');

if (opt.mint) {
  process.stdout.write(mintToken() + '\n');
  process.exit(0);
}

// ---- records ----
// Every entry carries t (ms since the double started, µs resolution) and wall (Date.now()).
//   sessions       HTTP/2 connections accepted {peer}
//   refused        --refuse: connection attempts {peer}
//   rpcs           every RPC {rpc, peer, metadata, request, code, details, auth_failed}
//   connections    mapping streams {conn, rpc, proxy_id, version, started_at, address,
//                  capabilities, init, snapshot_mappings, snapshot_start_t, paused_t,
//                  snapshot_done_t, snapshot_ms (init -> last snapshot ack or send), end_t,
//                  end_reason}
//   batches        messages sent {conn, i, phase snapshot|update, count, initial_sync_complete,
//                  ids (<= 20) / first_id / last_id, types, written_t}
//   acks           {conn, after_batch (the last batch sent before it), since_batch_ms, phase,
//                  discarded}
//   statuses       SendStatusUpdate {service_id, account_id, status, certificate_issued,
//                  error_message (null when absent), inbound_listener, code}
//   access_logs    {log}
//   peers          CreateProxyPeer {service_id, account_id, token, wireguard_public_key, cluster,
//                  code, details, created, name}
//   tokens_issued  one-time tokens sent {conn, service_id, account_id, token}
//   overflows      send-queue overflows {conn, proxy_id, queued}
//   drops          POST /drop {how, sessions, streams}
const t0 = performance.now();
const now = () => Math.round((performance.now() - t0) * 1000) / 1000; // ms since start, 1 µs
const startedWall = Date.now();
let rec;
function resetRecords() {
  rec = { sessions: [], refused: [], rpcs: [], connections: [], batches: [], acks: [], statuses: [],
    access_logs: [], peers: [], tokens_issued: [], overflows: [], drops: [] };
}
resetRecords();
function record(list, o) {
  o.t = now();
  o.wall = Date.now();
  rec[list].push(o);
  if (opt.record) fs.appendFileSync(opt.record, JSON.stringify({ list, ...o }) + '\n');
  return o;
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

if (opt.refuse) {
  // "Management is down" with a witness: accept and close at once.
  const srv = net.createServer((sock) => {
    record('refused', { peer: sock.remoteAddress + ':' + sock.remotePort });
    sock.on('error', () => {});
    sock.destroy();
  });
  srv.listen(opt.port, '127.0.0.1', () => {
    process.stdout.write('PORT ' + srv.address().port + '\n');
    startControl();
  });
  return;
}

// ---- state ----
const accessTokens = new Map(); // base64(sha256(token)) -> {revoked}
for (const t of opt.tokens) {
  if (!tokenFormatValid(t)) usage(`--token ${t.slice(0, 4)}...: not a valid proxy token`);
  accessTokens.set(hashToken(t), { revoked: false });
}
let services = new Map(); // id -> service (insertion order = snapshot order)
function setServices(list) {
  if (!Array.isArray(list)) throw new Error('services must be a JSON list');
  const m = new Map();
  for (const s of list) {
    if (!s || typeof s.id !== 'string' || s.id === '') throw new Error('every service needs an id');
    m.set(s.id, s);
  }
  services = m;
}
if (opt.services) setServices(JSON.parse(fs.readFileSync(opt.services, 'utf8')));

const oneTime = new Map(); // sha256 hex -> {account, service, expires}
const ONE_TIME_TTL_MS = 5 * 60 * 1000;
function generateOneTimeToken(accountId, serviceId, connSeq) {
  const token = crypto.randomBytes(32).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
  oneTime.set(crypto.createHash('sha256').update(token).digest('hex'),
    { account: accountId, service: serviceId, expires: Date.now() + ONE_TIME_TTL_MS });
  record('tokens_issued', { conn: connSeq, service_id: serviceId, account_id: accountId, token });
  return token;
}
function validateAndConsume(token, accountId, serviceId) {
  const h = crypto.createHash('sha256').update(token).digest('hex');
  const md = oneTime.get(h);
  if (!md) return 'invalid token';
  if (Date.now() > md.expires) { oneTime.delete(h); return 'token expired'; }
  if (md.account !== accountId) return 'account ID mismatch';
  if (md.service !== serviceId) return 'service ID mismatch';
  oneTime.delete(h);
  return null;
}
setInterval(() => {
  const t = Date.now();
  for (const [h, md] of oneTime) if (t > md.expires) oneTime.delete(h);
}, 60000).unref();

const peersByKey = new Map(); // wireguard public key -> peer

// Domain check of management's domain.ValidateDomains (spec §1.5 regex), ASCII only.
const DOMAIN_RE = /^(?:\*\.)?(?:(?:xn--)?[a-zA-Z0-9_](?:[a-zA-Z0-9-_]{0,61}[a-zA-Z0-9])?\.)*(?:xn--)?[a-zA-Z0-9](?:[a-zA-Z0-9-_]{0,61}[a-zA-Z0-9])?$/;
const addressValid = (a) => typeof a === 'string' && a !== '' && (net.isIP(a) !== 0 || DOMAIN_RE.test(a));

let silent = false; // unary RPCs are not answered
let silentStreams = false; // new and open mapping streams get nothing either

// ---- gRPC ----
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const protoRoot = path.join(__dirname, '..', '..', 'mgmt');
const def = loader.loadSync('proxy_service.proto', {
  includeDirs: [protoRoot, path.join(protoRoot, 'wkt')],
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def).management;
const S = grpc.status;

// Every HTTP/2 session (one per TCP connection), for /drop {how: transport} and the records.
const sessions = new Set();
const origCreateServer = http2.createServer;
http2.createServer = function (...a) {
  const srv = origCreateServer.apply(this, a);
  srv.on('session', (session) => {
    sessions.add(session);
    const sock = session.socket;
    record('sessions', { peer: sock ? sock.remoteAddress + ':' + sock.remotePort : '' });
    session.on('close', () => sessions.delete(session));
    session.on('error', () => {});
  });
  return srv;
};

const metaObj = (md) => {
  const m = md.getMap();
  const out = {};
  for (const k of Object.keys(m)) out[k] = Buffer.isBuffer(m[k]) ? m[k].toString('base64') : m[k];
  return out;
};
const peerIp = (peer) => String(peer || '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');

// Failure limiter per client IP: token bucket, authFailLimit per minute, burst authFailLimit.
const failBuckets = new Map();
function limited(ip) {
  if (opt.authFailLimit <= 0) return false;
  const b = failBuckets.get(ip);
  if (!b) return false;
  refill(b);
  return b.tokens < 1;
}
function refill(b) {
  const t = Date.now();
  b.tokens = Math.min(opt.authFailLimit, b.tokens + ((t - b.last) / 60000) * opt.authFailLimit);
  b.last = t;
}
function recordFailure(ip) {
  if (opt.authFailLimit <= 0) return;
  let b = failBuckets.get(ip);
  if (!b) { b = { tokens: opt.authFailLimit, last: Date.now() }; failBuckets.set(ip, b); }
  refill(b);
  b.tokens = Math.max(0, b.tokens - 1);
}

function checkAuth(md, ip) {
  if (limited(ip)) return { code: S.RESOURCE_EXHAUSTED, details: 'too many failed authentication attempts' };
  const vals = md.get('authorization');
  let err = null;
  if (vals.length === 0) err = 'missing authorization header';
  else if (!String(vals[0]).startsWith('Bearer ')) err = 'invalid authorization format';
  else {
    const tok = String(vals[0]).slice(7);
    if (!tokenFormatValid(tok)) err = 'invalid token format';
    else {
      const t = accessTokens.get(hashToken(tok));
      if (!t) err = 'invalid token';
      else if (t.revoked) err = 'token expired or revoked';
    }
  }
  if (err) {
    recordFailure(ip);
    return { code: S.UNAUTHENTICATED, details: err };
  }
  return null;
}

const authInterceptor = (methodDescriptor, call) => new grpc.ServerInterceptingCall(call, {
  start: (next) => {
    next({
      onReceiveMetadata: (md, mdNext) => {
        if (!methodDescriptor.path.startsWith('/management.ProxyService/')) { mdNext(md); return; }
        const peer = call.getPeer ? call.getPeer() : '';
        const bad = checkAuth(md, peerIp(peer));
        if (bad) {
          record('rpcs', { rpc: methodDescriptor.path.split('/').pop(), peer, metadata: metaObj(md), request: null,
            code: bad.code, details: bad.details, auth_failed: true });
          call.sendStatus({ code: bad.code, details: bad.details, metadata: new grpc.Metadata() });
          return;
        }
        mdNext(md);
      },
    });
  },
});

const server = new grpc.Server({
  interceptors: [authInterceptor],
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  // Like a grpc-go server with its default enforcement relaxed: nbproxy pings every 20 s.
  'grpc.keepalive_permit_without_calls': 1,
});

// Keep records readable: big strings by length.
const small = (o) => JSON.parse(JSON.stringify(o, (k, v) =>
  (typeof v === 'string' && v.length > 512) ? { bigString: v.length } : v));

function rpcRecord(name, call, request, extra) {
  return record('rpcs', { rpc: name, peer: call.getPeer(), metadata: metaObj(call.metadata), request: small(request),
    ...extra });
}

// ---- mapping streams ----
let connSeq = 0;
const conns = new Map(); // proxy_id -> conn

function shipTo(conn, s) {
  if (s.enabled === false) return false;
  if (s.cluster !== undefined && s.cluster !== conn.address) return false;
  const caps = conn.capabilities || {};
  if (s.private && !(caps._supports_private_service && caps.supports_private_service)) return false;
  const customPort = (s.listen_port || 0) !== 0 && (s.mode || '') !== 'tls';
  if (customPort && !caps._supports_custom_ports) return false;
  return true;
}
function toMapping(s, type, conn) {
  const m = {};
  for (const k of Object.keys(s)) if (k !== 'enabled' && k !== 'cluster') m[k] = s[k];
  m.type = type;
  if (type === 'UPDATE_TYPE_REMOVED') delete m.auth_token;
  else m.auth_token = generateOneTimeToken(s.account_id || '', s.id, conn.seq);
  return m;
}

function endConn(conn, status, reason) {
  if (conn.ended) return;
  conn.ended = true;
  conn.rec.end_t = now();
  conn.rec.end_reason = reason;
  if (conns.get(conn.proxyId) === conn) conns.delete(conn.proxyId);
  if (status) {
    try { conn.call.emit('error', status); } catch (e) { /* already gone */ }
  }
}

function writeMsg(conn, msg, phase, cb) {
  if (conn.ended) return;
  const ids = msg.mapping.map((m) => m.id);
  const b = record('batches', { conn: conn.seq, i: conn.batchesSent++, phase, count: msg.mapping.length,
    initial_sync_complete: !!msg.initial_sync_complete,
    ids: ids.length <= 20 ? ids : undefined, first_id: ids[0], last_id: ids[ids.length - 1],
    types: [...new Set(msg.mapping.map((m) => m.type || 'UPDATE_TYPE_CREATED'))] });
  try {
    conn.call.write(msg, () => { b.written_t = now(); if (cb) cb(); });
  } catch (e) {
    endConn(conn, null, 'write failed: ' + e.message);
  }
}

// After the snapshot: incremental messages from the queue, one at a time (a blocking Send).
function pump(conn) {
  if (!conn.snapshotDone || conn.writing || conn.ended || silentStreams) return;
  const msg = conn.queue.shift();
  if (!msg) return;
  conn.writing = true;
  writeMsg(conn, msg, 'update', () => { conn.writing = false; pump(conn); });
}

function enqueue(conn, msg) {
  if (conn.ended) return false;
  if (conn.queue.length >= opt.queue) {
    record('overflows', { conn: conn.seq, proxy_id: conn.proxyId, queued: conn.queue.length });
    endConn(conn, { code: S.UNAVAILABLE, details: 'send queue full: reconnect and resync' }, 'send queue overflow');
    return false;
  }
  conn.queue.push(msg);
  setImmediate(() => pump(conn));
  return true;
}

function snapshotBatches(conn) {
  const mappings = [];
  for (const s of services.values()) if (shipTo(conn, s)) mappings.push(toMapping(s, 'UPDATE_TYPE_CREATED', conn));
  conn.rec.snapshot_mappings = mappings.length;
  if (mappings.length === 0) return [{ mapping: [], initial_sync_complete: true }];
  const out = [];
  for (let i = 0; i < mappings.length; i += opt.batch) {
    out.push({ mapping: mappings.slice(i, i + opt.batch), initial_sync_complete: i + opt.batch >= mappings.length });
  }
  return out;
}

function snapshotDone(conn) {
  conn.snapshotDone = true;
  conn.rec.snapshot_done_t = now();
  conn.rec.snapshot_ms = Math.round((conn.rec.snapshot_done_t - conn.rec.t) * 1000) / 1000;
  pump(conn);
}

// Validation and registration shared by both streams. Returns a conn, or null after failing the
// call.
function connect(call, rpc, init, fail) {
  if (!init.proxy_id) { fail({ code: S.INVALID_ARGUMENT, details: 'proxy_id is required' }); return null; }
  if (!addressValid(init.address)) { fail({ code: S.INVALID_ARGUMENT, details: 'proxy address is invalid' }); return null; }
  const old = conns.get(init.proxy_id);
  const conn = {
    seq: ++connSeq, proxyId: init.proxy_id, address: init.address, capabilities: init.capabilities, rpc, call,
    queue: [], writing: false, snapshotDone: false, ended: false, batchesSent: 0, snapshot: [], snapIdx: 0,
    tokenHash: hashToken(String(call.metadata.get('authorization')[0] || '').slice(7)),
  };
  conn.rec = record('connections', { conn: conn.seq, rpc, proxy_id: init.proxy_id, version: init.version,
    started_at: init.started_at, address: init.address, capabilities: init.capabilities, peer: call.getPeer() });
  if (old) endConn(old, { code: S.CANCELLED, details: 'a newer connection with the same proxy_id' }, 'superseded');
  conns.set(init.proxy_id, conn);
  call.on('cancelled', () => endConn(conn, null, 'cancelled by the client'));
  call.on('error', () => endConn(conn, null, 'stream error'));
  return conn;
}

// The snapshot, built now from the current service set (or held until POST /hold {on: false}).
const held = [];
const paused = []; // snapshots stopped by --pause-after
function resumeSnapshot(conn) {
  if (conn.ended) return;
  if (conn.snapIdx < conn.snapshot.length) sendNextSnapshotBatch(conn);
  else snapshotDone(conn);
}
function startSnapshot(conn) {
  if (opt.hold) { held.push(conn); return; }
  conn.rec.snapshot_start_t = now();
  conn.snapshot = snapshotBatches(conn);
  sendNextSnapshotBatch(conn);
}

function sendNextSnapshotBatch(conn) {
  const msg = conn.snapshot[conn.snapIdx++];
  writeMsg(conn, msg, 'snapshot', conn.rpc === 'GetMappingUpdate' ? () => {
    if (conn.snapIdx < conn.snapshot.length) sendNextSnapshotBatch(conn);
    else snapshotDone(conn);
  } : null);
}

const impl = {
  SyncMappings: (call) => {
    let conn = null;
    let n = 0;
    const fail = (st) => { try { call.emit('error', st); } catch (e) { /* gone */ } };
    if (opt.syncUnimplemented) {
      // At once, before reading anything: what a management without the method answers.
      rpcRecord('SyncMappings', call, null, { code: S.UNIMPLEMENTED });
      fail({ code: S.UNIMPLEMENTED, details: 'unknown method SyncMappings for service management.ProxyService' });
      return;
    }
    call.on('data', (req) => {
      n++;
      if (n === 1) {
        rpcRecord('SyncMappings', call, req.init || req, { msg: req.msg || null });
        if (silentStreams) return;
        if (req.msg !== 'init') { fail({ code: S.INVALID_ARGUMENT, details: 'first message must be init' }); return; }
        conn = connect(call, 'SyncMappings', req.init, fail);
        if (!conn) return;
        conn.rec.init = small(req.init);
        startSnapshot(conn);
        return;
      }
      if (!conn || conn.ended) return;
      if (req.msg !== 'ack') {
        record('acks', { conn: conn.seq, unexpected: req.msg || null });
        endConn(conn, { code: S.INVALID_ARGUMENT, details: 'expected an ack' }, 'not an ack');
        return;
      }
      const last = rec.batches.filter((b) => b.conn === conn.seq).pop();
      const inSnapshot = !conn.snapshotDone;
      record('acks', { conn: conn.seq, after_batch: last ? last.i : -1, since_batch_ms: last ? now() - last.t : null,
        phase: inSnapshot ? 'snapshot' : 'update', discarded: !inSnapshot });
      if (!inSnapshot) return; // after the snapshot acks are discarded
      if (conn.snapIdx - 1 === opt.pauseAfter && !conn.pausedOnce) {
        conn.pausedOnce = true;
        paused.push(conn);
        conn.rec.paused_t = now();
        return;
      }
      if (conn.snapIdx < conn.snapshot.length) sendNextSnapshotBatch(conn);
      else snapshotDone(conn);
    });
    call.on('end', () => {
      if (conn) endConn(conn, null, 'client half-closed');
      try { call.end(); } catch (e) { /* gone */ }
    });
  },
  GetMappingUpdate: (call) => {
    const req = call.request;
    rpcRecord('GetMappingUpdate', call, req);
    if (silentStreams) return;
    const conn = connect(call, 'GetMappingUpdate', req, (st) => call.emit('error', st));
    if (!conn) return;
    conn.rec.init = small(req);
    startSnapshot(conn);
  },
  SendStatusUpdate: (call, cb) => {
    const r = call.request;
    const entry = opt.lean ? {} : rpcRecord('SendStatusUpdate', call, r);
    const st = record('statuses', { service_id: r.service_id, account_id: r.account_id, status: r.status,
      certificate_issued: r.certificate_issued,
      error_message: r._error_message === 'error_message' ? r.error_message : null,
      inbound_listener: r.inbound_listener || null });
    if (silent) return;
    let err = null;
    if (!r.service_id || !r.account_id) err = { code: S.INVALID_ARGUMENT, details: 'service_id and account_id are required' };
    else {
      const s = services.get(r.service_id);
      if (!s || (s.account_id || '') !== r.account_id) err = { code: S.NOT_FOUND, details: `service ${r.service_id} not found` };
    }
    entry.code = st.code = err ? err.code : S.OK;
    if (err) cb(err); else cb(null, {});
  },
  SendAccessLog: (call, cb) => {
    const entry = opt.lean ? {} : rpcRecord('SendAccessLog', call, call.request);
    record('access_logs', { log: call.request.log });
    if (silent) return;
    entry.code = S.OK;
    cb(null, {});
  },
  CreateProxyPeer: (call, cb) => {
    const r = call.request;
    const entry = rpcRecord('CreateProxyPeer', call, r);
    const p = record('peers', { service_id: r.service_id, account_id: r.account_id, token: r.token,
      wireguard_public_key: r.wireguard_public_key, cluster: r.cluster });
    if (silent) return;
    const answer = (code, details, resp) => {
      entry.code = p.code = code;
      if (details) entry.details = p.details = details;
      if (resp) p.response = resp;
      if (code === S.OK) cb(null, resp); else cb({ code, details });
    };
    if (!r.service_id || !r.account_id || !r.token) {
      answer(S.OK, null, { success: false,
        error_message: 'missing required fields: service_id, account_id, and token are required' });
      return;
    }
    const bad = validateAndConsume(r.token, r.account_id, r.service_id);
    if (bad) { answer(S.UNAUTHENTICATED, 'token validation: ' + bad); return; }
    let key = null;
    try { key = Buffer.from(r.wireguard_public_key, 'base64'); } catch (e) { key = null; }
    if (!key || key.length !== 32 || key.toString('base64') !== r.wireguard_public_key) {
      answer(S.INTERNAL, 'create proxy peer: invalid WireGuard public key');
      return;
    }
    const existing = peersByKey.get(r.wireguard_public_key);
    if (existing) {
      p.created = false;
      p.name = existing.name;
    } else {
      const name = 'proxy-' + crypto.randomBytes(10).toString('hex');
      peersByKey.set(r.wireguard_public_key, { name, account_id: r.account_id, cluster: r.cluster });
      p.created = true;
      p.name = name;
    }
    answer(S.OK, null, { success: true });
  },
};
for (const name of ['Authenticate', 'GetOIDCURL', 'ValidateSession', 'ValidateTunnelPeer', 'CheckLLMPolicyLimits',
  'RecordLLMUsage']) {
  impl[name] = (call, cb) => {
    rpcRecord(name, call, call.request, { code: S.UNIMPLEMENTED });
    if (silent) return;
    cb({ code: S.UNIMPLEMENTED, details: `method ${name} not implemented` });
  };
}
server.addService(pkg.ProxyService.service, impl);

// ---- pushing updates ----
function pushService(op, s) {
  const type = { create: 'UPDATE_TYPE_CREATED', modify: 'UPDATE_TYPE_MODIFIED', remove: 'UPDATE_TYPE_REMOVED' }[op];
  if (!type) throw new Error('op must be create, modify or remove');
  if (!s || !s.id) throw new Error('the service needs an id');
  let svc = s;
  if (op === 'remove') {
    svc = services.get(s.id) || s;
    services.delete(s.id);
  } else {
    services.set(s.id, s);
  }
  let queued = 0;
  for (const conn of conns.values()) {
    if (op !== 'remove' && !shipTo(conn, svc)) continue;
    if (enqueue(conn, { mapping: [toMapping(svc, type, conn)] })) queued++;
  }
  return queued;
}
function pushRaw(mappings, withToken) {
  let queued = 0;
  for (const conn of conns.values()) {
    const msg = { mapping: mappings.map((m) => {
      const c = { ...m };
      if (c.type === undefined) c.type = 'UPDATE_TYPE_CREATED';
      if (withToken && c.type !== 'UPDATE_TYPE_REMOVED' && c.type !== 2 && !c.auth_token) {
        c.auth_token = generateOneTimeToken(c.account_id || '', c.id || '', conn.seq);
      }
      return c;
    }) };
    if (enqueue(conn, msg)) queued++;
  }
  return queued;
}
function drop(how) {
  const n = { sessions: sessions.size, streams: conns.size };
  record('drops', { how, ...n });
  if (how === 'stream') {
    for (const conn of [...conns.values()]) endConn(conn, { code: S.UNAVAILABLE, details: 'dropped by the test' }, 'dropped');
  } else {
    for (const conn of [...conns.values()]) endConn(conn, null, 'transport dropped');
    for (const s of [...sessions]) s.destroy();
  }
  return n;
}

// ---- control interface ----
function startControl() {
  const ctl = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const reply = (code, o) => {
        const body = JSON.stringify(o);
        res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      let body = null;
      try {
        const txt = Buffer.concat(chunks).toString('utf8');
        body = txt ? JSON.parse(txt) : {};
      } catch (e) { reply(400, { error: 'body is not JSON: ' + e.message }); return; }
      const u = new URL(req.url, 'http://x');
      try {
        const route = req.method + ' ' + u.pathname;
        switch (route) {
          case 'GET /state': {
            if (opt.refuse) { reply(200, { now: now(), started_wall: startedWall, ...rec }); return; }
            const since = Number(u.searchParams.get('since') || 0);
            const out = { now: now(), started_wall: startedWall, silent, hold: opt.hold, services: services.size,
              connected: [...conns.values()].map((c) => ({ conn: c.seq, proxy_id: c.proxyId, rpc: c.rpc,
                snapshot_done: c.snapshotDone, queued: c.queue.length })),
              sessions_open: sessions.size, peers_known: peersByKey.size, one_time_tokens: oneTime.size };
            for (const k of Object.keys(rec)) out[k] = since ? rec[k].filter((e) => e.t >= since) : rec[k];
            reply(200, out);
            return;
          }
          case 'POST /services': setServices(body); reply(200, { services: services.size }); return;
          case 'POST /update': {
            const list = body.services || [body.service];
            let queued = 0;
            for (const s of list) queued += pushService(body.op, s);
            reply(200, { queued, connections: conns.size });
            return;
          }
          case 'POST /push': reply(200, { queued: pushRaw(body.mappings || [], body.token !== false) }); return;
          case 'POST /drop': reply(200, drop(body.how || 'transport')); return;
          case 'POST /silence':
            silent = !!body.on;
            silentStreams = silent && body.streams !== false;
            if (!silentStreams) for (const c of conns.values()) pump(c);
            reply(200, { silent, streams: silentStreams });
            return;
          case 'POST /hold': {
            opt.hold = !!body.on;
            let released = 0;
            if (!opt.hold) {
              for (const c of held.splice(0)) if (!c.ended) { startSnapshot(c); released++; }
              for (const c of paused.splice(0)) if (!c.ended) { resumeSnapshot(c); released++; }
            }
            reply(200, { hold: opt.hold, released });
            return;
          }
          case 'POST /tokens': {
            if (body.mint) {
              const t = mintToken();
              accessTokens.set(hashToken(t), { revoked: false });
              reply(200, { token: t });
            } else if (body.add) {
              if (!tokenFormatValid(body.add)) { reply(400, { error: 'invalid token format' }); return; }
              accessTokens.set(hashToken(body.add), { revoked: false });
              reply(200, { ok: true });
            } else if (body.revoke) {
              // Management re-checks tokens every minute and disconnects on revocation; here at once.
              const h = hashToken(body.revoke);
              const t = accessTokens.get(h);
              if (t) t.revoked = true;
              for (const c of [...conns.values()]) {
                if (c.tokenHash === h) endConn(c, { code: S.UNAUTHENTICATED, details: 'token expired or revoked' }, 'token revoked');
              }
              reply(200, { ok: !!t });
            } else reply(400, { error: 'add, revoke or mint' });
            return;
          }
          case 'POST /reset': resetRecords(); reply(200, { ok: true }); return;
          default: reply(404, { error: 'no such endpoint: ' + route });
        }
      } catch (e) {
        reply(400, { error: e.message });
      }
    });
  });
  ctl.listen(opt.controlPort, '127.0.0.1', () => process.stdout.write('CONTROL ' + ctl.address().port + '\n'));
}

const creds = opt.tlsCert
  ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: fs.readFileSync(opt.tlsCert), private_key: fs.readFileSync(opt.tlsKey) }], false)
  : grpc.ServerCredentials.createInsecure();
server.bindAsync('127.0.0.1:' + opt.port, creds, (e, port) => {
  if (e) {
    console.error('management.js: cannot listen on 127.0.0.1:' + opt.port + ': ' + e.message);
    process.exit(1);
  }
  process.stdout.write('PORT ' + port + '\n');
  startControl();
});
