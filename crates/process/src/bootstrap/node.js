// Nimbus Node.js worker bootstrap.
//
// argv: <protocol in fd> <protocol out fd> <code dir> <handler> <log nonce>
//
// Protocol (one JSON document per line, UTF-8):
//   worker -> host  {"ready": {"init_ms": N}}            after the handler module was loaded
//                   {"init_error": {"errorType", "errorMessage"}}   then the worker exits
//   host -> worker  {"event": {...}, "context": {...}}
//   worker -> host  {"ok": <value>} | {"error": {"errorType", "errorMessage", "stackTrace"}}
//   A streaming handler (awslambda.streamifyResponse) first sends
//                   {"head": {"statusCode", "headers", "cookies"}} and {"chunk": "<base64>"}
//                   per write, then its {"ok": null} | {"error": ...}.
// fd 1 (console.log) and fd 2 are the function's logs; after each invocation
// both get the end marker "\0nimbus-log-end:<nonce>\0" before the result is sent.
'use strict';
(function nimbusMain() {
  const started = process.hrtime.bigint();
  const fs = require('fs');
  const net = require('net');
  const path = require('path');
  const { pathToFileURL } = require('url');
  const [inArg, outArg, codeDir, handlerSpec, nonce] = process.argv.slice(1);
  // Reopen the protocol pipes close-on-exec so that processes the
  // function starts do not inherit them.
  function reopen(fd, flags) {
    try {
      const copy = fs.openSync('/proc/self/fd/' + fd, flags);
      fs.closeSync(fd);
      return copy;
    } catch (_) {
      return fd;
    }
  }
  const inFd = reopen(Number(inArg), 'r');
  const outFd = reopen(Number(outArg), 'w');
  const marker = '\0nimbus-log-end:' + nonce + '\0';
  process.argv = [process.argv[0]];

  function writeAll(fd, text) {
    const buf = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(fd, buf, off, buf.length - off);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
      }
    }
  }
  const send = (obj) => writeAll(outFd, JSON.stringify(obj) + '\n');
  function endLogs() {
    for (const fd of [1, 2]) {
      try { writeAll(fd, marker); } catch (_) { /* the stream is gone */ }
    }
  }
  function errorOf(e) {
    if (e instanceof Error) {
      const stack = typeof e.stack === 'string' ? e.stack.split('\n').slice(1).map((s) => s.trim()) : [];
      return { errorType: e.name || 'Error', errorMessage: e.message, stackTrace: stack };
    }
    let message;
    try { message = typeof e === 'string' ? e : JSON.stringify(e); } catch (_) { message = String(e); }
    return { errorType: typeof e, errorMessage: String(message), stackTrace: [] };
  }
  // Lambda's response streaming: `awslambda.streamifyResponse(handler)`
  // marks a handler `async (event, responseStream, context)`, and
  // `awslambda.HttpResponseStream.from(stream, {statusCode, headers,
  // cookies})` sets the response's head before the first write.
  const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
  const PRELUDE = Symbol('nimbus.prelude');
  globalThis.awslambda = {
    streamifyResponse(handler) {
      handler[STREAMING] = 'response';
      return handler;
    },
    HttpResponseStream: {
      from(stream, prelude) {
        stream[PRELUDE] = prelude || {};
        return stream;
      },
    },
  };
  function responseStream() {
    const { Writable } = require('stream');
    let headSent = false;
    let contentType = 'application/octet-stream';
    const stream = new Writable({
      write(chunk, encoding, cb) {
        try {
          head();
          const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding);
          if (buf.length > 0) send({ chunk: buf.toString('base64') });
          cb();
        } catch (e) {
          cb(e);
        }
      },
      final(cb) {
        try { head(); cb(); } catch (e) { cb(e); }
      },
    });
    function head() {
      if (headSent) return;
      headSent = true;
      const p = stream[PRELUDE] || {};
      const headers = Object.assign({ 'content-type': contentType }, p.headers || {});
      send({ head: { statusCode: p.statusCode || 200, headers, cookies: p.cookies || [] } });
    }
    stream.setContentType = (t) => { contentType = String(t); };
    return stream;
  }
  async function invokeStreaming(fn, event, context) {
    const stream = responseStream();
    await fn(event, stream, context);
    if (!stream.writableEnded) stream.end();
    await require('stream').promises.finished(stream);
    return null;
  }

  function initError(errorType, e) {
    if (e && e.stack) console.error(e.stack);
    endLogs();
    send({ init_error: { errorType, errorMessage: e instanceof Error ? e.message : String(e) } });
    process.exit(1);
  }

  async function load() {
    const dot = handlerSpec.lastIndexOf('.');
    const modPath = handlerSpec.slice(0, dot);
    const name = handlerSpec.slice(dot + 1);
    const base = path.resolve(codeDir, modPath);
    let file = null;
    for (const ext of ['.js', '.mjs', '.cjs']) {
      if (fs.existsSync(base + ext)) { file = base + ext; break; }
    }
    if (file === null) {
      initError('Runtime.ImportModuleError', new Error(`Cannot find module '${modPath}'`));
    }
    let mod;
    try {
      if (file.endsWith('.mjs')) {
        mod = await import(pathToFileURL(file).href);
      } else {
        try {
          mod = require(file);
        } catch (e) {
          if (e && e.code === 'ERR_REQUIRE_ESM') mod = await import(pathToFileURL(file).href);
          else throw e;
        }
      }
    } catch (e) {
      const type = e instanceof SyntaxError ? 'Runtime.UserCodeSyntaxError' : 'Runtime.ImportModuleError';
      initError(type, e);
    }
    let fn = mod ? mod[name] : undefined;
    if (fn === undefined && mod && mod.default) fn = mod.default[name];
    if (typeof fn !== 'function') {
      initError('Runtime.HandlerNotFound', new Error(`${handlerSpec} is undefined or not exported`));
    }
    return fn;
  }

  function invoke(fn, event, context) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const callback = (err, result) => {
        if (settled) return;
        settled = true;
        if (err !== undefined && err !== null) reject(err);
        else resolve(result);
      };
      context.done = callback;
      context.succeed = (r) => callback(null, r);
      context.fail = (e) => callback(e === undefined || e === null ? new Error('handled') : e);
      let ret;
      try {
        ret = fn(event, context, callback);
      } catch (e) {
        callback(e);
        return;
      }
      if (ret && typeof ret.then === 'function') {
        ret.then((r) => callback(null, r), (e) => callback(e === undefined || e === null ? new Error('rejected') : e));
      } else if (fn.length < 3) {
        callback(null, ret);
      }
    });
  }

  function contextOf(c) {
    return {
      awsRequestId: c.invocation_id,
      functionName: c.function_name,
      functionVersion: String(c.function_version),
      memoryLimitInMB: String(c.memory_limit_mib),
      invokedFunctionArn: c.invoked_function_arn,
      logGroupName: '/nimbus/' + c.function_name,
      logStreamName: c.invocation_id,
      callbackWaitsForEmptyEventLoop: true,
      identity: undefined,
      clientContext: undefined,
      getRemainingTimeInMillis: () => Math.max(0, Math.floor(c.deadline_ms - Date.now())),
    };
  }

  async function handle(fn, line) {
    const msg = JSON.parse(line);
    let reply;
    try {
      // This invocation's credential for Nimbus's local API.
      process.env.NIMBUS_API_TOKEN = msg.context.nimbus_token || '';
      const context = contextOf(msg.context);
      const result = fn[STREAMING]
        ? await invokeStreaming(fn, msg.event, context)
        : await invoke(fn, msg.event, context);
      reply = { ok: result === undefined ? null : result };
    } catch (e) {
      const err = errorOf(e);
      console.error(`ERROR\tInvoke Error\t${err.errorType}: ${err.errorMessage}` + (e && e.stack ? '\n' + e.stack : ''));
      reply = { error: err };
    }
    let payload;
    try {
      payload = JSON.stringify(reply);
    } catch (e) {
      console.error(`ERROR\tRuntime.MarshalError\t${e.message}`);
      payload = JSON.stringify({ error: { errorType: 'Runtime.MarshalError', errorMessage: 'Unable to stringify response body: ' + e.message, stackTrace: [] } });
    }
    endLogs();
    writeAll(outFd, payload + '\n');
  }

  load().then((fn) => {
    const initMs = Number(process.hrtime.bigint() - started) / 1e6;
    send({ ready: { init_ms: initMs } });
    const input = new net.Socket({ fd: inFd, readable: true, writable: false });
    // Chunks of the line being received; only new chunks are searched.
    let parts = [];
    let queue = Promise.resolve();
    input.setEncoding('utf8');
    input.on('data', (chunk) => {
      let start = 0;
      let nl;
      while ((nl = chunk.indexOf('\n', start)) >= 0) {
        parts.push(chunk.slice(start, nl));
        const line = parts.join('');
        parts = [];
        queue = queue.then(() => handle(fn, line));
        start = nl + 1;
      }
      if (start < chunk.length) parts.push(chunk.slice(start));
    });
    input.on('end', () => process.exit(0));
    input.on('error', () => process.exit(0));
  }, (e) => initError('Runtime.ImportModuleError', e));
})();
