// SPDX-License-Identifier: BSD-3-Clause
//
// The management server nbproxy's gRPC client is tested against (tests/unit/mgmt/grpc.c):
//   node peer.js --scenario NAME --record FILE
// listens on 127.0.0.1 with a random port, prints "PORT <n>" once listening, and appends one
// JSON line to FILE for everything it sees (every RPC with its metadata, every request message,
// every PING), written before it answers, so a client that got its answer can read the record.
// Stop it with SIGTERM (by PID).
//
// Scenarios:
//   default  @grpc/grpc-js ProxyService loaded from OUR mgmt/proxy_service.proto:
//            SendStatusUpdate   records, answers {}
//            ValidateSession    echoes: user_id = domain, user_email = session_token
//            ValidateTunnelPeer echoes tunnel_ip back as session_token (large-message round
//                               trips); domain "big:<bytes>" answers a session_token that size
//            Authenticate       id "status:<code>:<text>" fails with that status, else success
//            GetMappingUpdate   version "n=<N>": N responses of one mapping each (the first one
//                               with every field set), the last with initial_sync_complete
//            SyncMappings       after init: 3 snapshot batches, each sent after the previous
//                               ack, the last with initial_sync_complete; then one incremental
//                               update; after its ack the call ends OK
//            GetOIDCURL         never answers (deadlines)
//            CheckLLMPolicyLimits, RecordLLMUsage: not implemented (UNIMPLEMENTED)
//   goaway   like default, but the first SyncMappings init triggers server.tryShutdown()
//            (GOAWAY; the open stream goes on), and 400 ms later forceShutdown()
//   maxage   like default with grpc.max_connection_age_ms = 300 (grpc-js sends GOAWAY itself)
//   raw      node:http2 without grpc-js, for answers grpc-js never gives; records every header
//            (pseudo-headers included). By path (service x.Raw):
//              /x.Raw/NotFound       404 text/plain
//              /x.Raw/Html           200 text/html with a body
//              /x.Raw/NoTrailers     200 application/grpc, one message, END_STREAM, no status
//              /x.Raw/Compressed     a message with compressed flag 1
//              /x.Raw/Truncated      a prefix announcing 10 bytes, 3 bytes, then status 0
//              /x.Raw/TrailersOnly   HEADERS+END_STREAM with grpc-status 5 and a message
//              /x.Raw/Reset          RST_STREAM(REFUSED_STREAM) after the request head
//              /x.Raw/Echo           echoes every request message back, then status 0
//   calm     raw, and the first PING is answered with GOAWAY(ENHANCE_YOUR_CALM,
//            "too_many_pings"), what a grpc-go server's keepalive policy sends
//   silent   a TCP server that accepts and never reads or writes
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');
const http2 = require('http2');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const scenario = args.scenario || 'default';
const recordFile = args.record;
if (!recordFile) {
  console.error('usage: node peer.js --scenario NAME --record FILE');
  process.exit(2);
}
fs.writeFileSync(recordFile, '');
const record = (o) => fs.appendFileSync(recordFile, JSON.stringify(o) + '\n');
const ready = (port) => process.stdout.write('PORT ' + port + '\n');

// Count every PING a session receives: wrap http2.createServer before grpc-js uses it.
const origCreateServer = http2.createServer;
http2.createServer = function (...a) {
  const srv = origCreateServer.apply(this, a);
  srv.on('session', (session) => session.on('ping', () => record({ event: 'ping' })));
  return srv;
};

if (scenario === 'silent') {
  const held = [];
  const srv = net.createServer((sock) => {
    held.push(sock);
    sock.on('error', () => {}); // the client gives up with a reset: expected
    sock.pause();
    record({ event: 'accept' });
  });
  srv.listen(0, '127.0.0.1', () => ready(srv.address().port));
} else if (scenario === 'raw' || scenario === 'calm') {
  runRaw();
} else {
  runGrpc();
}

function frame(buf, flag = 0) {
  const h = Buffer.alloc(5);
  h[0] = flag;
  h.writeUInt32BE(buf.length, 1);
  return Buffer.concat([h, buf]);
}

function runRaw() {
  const srv = http2.createServer();
  srv.on('session', (session) => {
    session.on('ping', () => { // recorded by the createServer wrapper above
      if (scenario === 'calm')
        session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_pings'));
    });
    session.on('error', () => {});
  });
  srv.on('stream', (stream, headers) => {
    stream.on('error', () => {}); // resets (ours or the client's) are part of the scripts
    const h = {};
    for (const k of Object.keys(headers)) h[k] = headers[k];
    record({ event: 'request', path: headers[':path'], headers: h });
    const grpcHead = { ':status': 200, 'content-type': 'application/grpc' };
    const p = headers[':path'];
    const chunks = [];
    stream.on('data', (d) => chunks.push(d));
    if (p === '/x.Raw/Reset') {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (p === '/x.Raw/TrailersOnly') {
      stream.respond({ ...grpcHead, 'grpc-status': '5', 'grpc-message': 'no such service %F0%9F%90%9B' },
        { endStream: true });
      return;
    }
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      switch (p) {
        case '/x.Raw/NotFound':
          stream.respond({ ':status': 404, 'content-type': 'text/plain' });
          stream.end('not here\n');
          break;
        case '/x.Raw/Html':
          stream.respond({ ':status': 200, 'content-type': 'text/html' });
          stream.end('<html>proxy error page</html>');
          break;
        case '/x.Raw/NoTrailers':
          stream.respond(grpcHead);
          stream.end(frame(Buffer.from([0x0a, 0x01, 0x41])));
          break;
        case '/x.Raw/Compressed':
          stream.respond(grpcHead, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(frame(Buffer.from([0x0a, 0x01, 0x41]), 1));
          break;
        case '/x.Raw/Truncated': {
          const h = Buffer.from([0, 0, 0, 0, 10, 1, 2, 3]);
          stream.respond(grpcHead, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(h);
          break;
        }
        case '/x.Raw/Echo':
          stream.respond(grpcHead, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'echoed' }));
          stream.end(body);
          break;
        default:
          stream.respond({ ...grpcHead, 'grpc-status': '12', 'grpc-message': 'unknown raw path' }, { endStream: true });
      }
    });
  });
  srv.listen(0, '127.0.0.1', () => ready(srv.address().port));
}

function runGrpc() {
  const grpc = require('@grpc/grpc-js');
  const loader = require('@grpc/proto-loader');
  const root = path.join(__dirname, '..', '..', 'mgmt');
  const def = loader.loadSync('proxy_service.proto', {
    includeDirs: [root, path.join(root, 'wkt')],
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def).management;

  const opts = {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  };
  if (scenario === 'maxage') opts['grpc.max_connection_age_ms'] = 300;
  const server = new grpc.Server(opts);

  const meta = (call) => {
    const m = call.metadata.getMap();
    const out = {};
    for (const k of Object.keys(m)) out[k] = Buffer.isBuffer(m[k]) ? m[k].toString('base64') : m[k];
    return out;
  };
  const rpc = (name, call, request) => record({ event: 'rpc', rpc: name, metadata: meta(call), request });
  // Keep records readable: replace big strings by their length.
  const small = (req) => JSON.parse(JSON.stringify(req, (k, v) =>
    (typeof v === 'string' && v.length > 256) ? { bigString: v.length } : v));

  const fullMapping = (i) => ({
    type: 'UPDATE_TYPE_CREATED', id: 'svc-' + i, account_id: 'acct-1', domain: 'app' + i + '.example.com',
    path: [{
      path: '/api', target: 'http://10.0.0.5:8080/base',
      options: {
        skip_tls_verify: true, request_timeout: { seconds: 30, nanos: 500000 }, path_rewrite: 'PATH_REWRITE_PRESERVE',
        custom_headers: { 'X-Env': 'prod', 'X-Team': 'edge' }, proxy_protocol: true,
        session_idle_timeout: { seconds: 120, nanos: 0 }, direct_upstream: true,
        capture_max_request_bytes: 1024, capture_content_types: ['application/json'],
        middlewares: [{ id: 'llm_router', enabled: true, slot: 'MIDDLEWARE_SLOT_ON_REQUEST', config_json: Buffer.from('{"a":1}'),
          fail_mode: 'FAIL_CLOSED', timeout: { seconds: 2 }, can_mutate: true }],
        agent_network: true, disable_access_log: true,
      },
    }, { path: '/', target: 'http://10.0.0.6:80' }],
    auth_token: 'one-time-token-' + i,
    auth: { session_key: 'c2Vzc2lvbi1rZXk=', max_session_age_seconds: 86400, password: true, pin: false, oidc: true,
      header_auths: [{ header: 'X-Api-Key', hashed_value: '$argon2id$v=19$m=65536,t=1,p=4$abc$def' }] },
    pass_host_header: true, rewrite_redirects: true, mode: 'http', listen_port: 0,
    access_restrictions: { allowed_cidrs: ['10.0.0.0/8'], crowdsec_mode: 'enforce' }, private: true,
  });
  const smallMapping = (id, type) => ({ type, id, account_id: 'acct-1', domain: id + '.example.com', mode: 'tcp', listen_port: 9000 });

  const impl = {
    SendStatusUpdate: (call, cb) => { rpc('SendStatusUpdate', call, small(call.request)); cb(null, {}); },
    SendAccessLog: (call, cb) => { rpc('SendAccessLog', call, small(call.request)); cb(null, {}); },
    ValidateSession: (call, cb) => {
      rpc('ValidateSession', call, small(call.request));
      cb(null, { valid: true, user_id: call.request.domain, user_email: call.request.session_token });
    },
    ValidateTunnelPeer: (call, cb) => {
      rpc('ValidateTunnelPeer', call, small(call.request));
      const m = /^big:(\d+)$/.exec(call.request.domain);
      const token = m ? 'x'.repeat(Number(m[1])) : call.request.tunnel_ip;
      cb(null, { valid: true, session_token: token, user_id: String(call.request.tunnel_ip.length) });
    },
    Authenticate: (call, cb) => {
      rpc('Authenticate', call, small(call.request));
      const m = /^status:(\d+):([\s\S]*)$/.exec(call.request.id);
      if (m) cb({ code: Number(m[1]), details: m[2] });
      else cb(null, { success: true, session_token: 'sess-' + call.request.id });
    },
    CreateProxyPeer: (call, cb) => { rpc('CreateProxyPeer', call, small(call.request)); cb(null, { success: true }); },
    GetOIDCURL: (call) => { rpc('GetOIDCURL', call, small(call.request)); /* never answers */ },
    GetMappingUpdate: (call) => {
      rpc('GetMappingUpdate', call, small(call.request));
      const m = /^n=(\d+)$/.exec(call.request.version);
      const n = m ? Number(m[1]) : 3;
      for (let i = 0; i < n; i++) {
        call.write({ mapping: [i === 0 ? fullMapping(i) : smallMapping('svc-' + i, 'UPDATE_TYPE_MODIFIED')],
          initial_sync_complete: i === n - 1 });
      }
      call.end();
    },
    SyncMappings: (call) => {
      let msgs = 0;
      let acks = 0;
      const batches = [
        { mapping: [smallMapping('a1', 'UPDATE_TYPE_CREATED'), smallMapping('a2', 'UPDATE_TYPE_CREATED')] },
        { mapping: [fullMapping(3)] },
        { mapping: [], initial_sync_complete: true },
      ];
      call.on('data', (req) => {
        msgs++;
        record({ event: 'sync-msg', n: msgs, msg: req.msg, init: req.init ? small(req.init) : undefined, ack: !!req.ack, metadata: meta(call) });
        if (msgs === 1) {
          if (req.msg !== 'init') { call.destroy({ code: grpc.status.INVALID_ARGUMENT, details: 'first message must be init' }); return; }
          rpc('SyncMappings', call, small(req.init));
          if (scenario === 'goaway') {
            server.tryShutdown(() => record({ event: 'shutdown-done' }));
            record({ event: 'goaway-sent' });
            setTimeout(() => { record({ event: 'force-shutdown' }); server.forceShutdown(); }, 400);
            return;
          }
          call.write(batches[0]);
          return;
        }
        if (req.msg !== 'ack') { call.destroy({ code: grpc.status.INVALID_ARGUMENT, details: 'expected ack' }); return; }
        acks++;
        if (acks < batches.length) call.write(batches[acks]);
        else if (acks === batches.length) call.write({ mapping: [smallMapping('inc1', 'UPDATE_TYPE_REMOVED')] });
        else call.end();
      });
      call.on('end', () => record({ event: 'sync-client-half-close' }));
      call.on('error', (e) => record({ event: 'sync-error', code: e.code, message: e.message }));
      call.on('cancelled', () => record({ event: 'sync-cancelled' }));
    },
  };
  server.addService(pkg.ProxyService.service, impl);
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => {
    if (e) { console.error(e); process.exit(1); }
    ready(port);
  });
}

process.on('SIGTERM', () => process.exit(0));
