// Nimbus's services for Node.js functions, importable as they are:
//
//   const { config, docs, kv } = require("nimbus"); // or: import { kv } from "nimbus";
//
//   exports.handler = async (event) => {
//     const url = await config.get("API_URL", "https://example.com");
//     const hits = await kv.incr("hits");
//     await kv.set("last", String(hits), { ttl: 3600 });
//     const cart = kv.store("cart");          // another store of the namespace
//     return { hits, items: await cart.keys({ prefix: "item:" }) };
//   };
//
// A store must be in the function's grants.kv, a config key in its
// grants.config; config reads of one invocation all see the version current
// at its first read. Calls work during an
// invocation only (each has its own credential); a refusal rejects with a
// NimbusError carrying the API's code and message.
"use strict";

const http = require("http");

class NimbusError extends Error {
  constructor(status, code, message) {
    super(`${code} (${status}): ${message}`);
    this.name = "NimbusError";
    this.status = status;
    this.code = code;
  }
}

function call(method, path, body, extraHeaders) {
  const socketPath = process.env.NIMBUS_API_SOCKET;
  const token = process.env.NIMBUS_API_TOKEN;
  if (!socketPath || !token) {
    return Promise.reject(new NimbusError(0, "unavailable",
      "Nimbus's API is reachable only inside an invocation of a Nimbus function"));
  }
  return new Promise((resolve, reject) => {
    const headers = Object.assign({}, extraHeaders, { authorization: `Bearer ${token}` });
    if (body !== undefined) headers["content-length"] = Buffer.byteLength(body);
    const req = http.request({ socketPath, method, path, headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const data = Buffer.concat(chunks);
        if (res.statusCode >= 400) {
          try {
            const e = JSON.parse(data.toString()).error;
            reject(new NimbusError(res.statusCode, e.code, e.message));
          } catch (_) {
            reject(new NimbusError(res.statusCode, "http_error", data.toString()));
          }
        } else {
          resolve(data);
        }
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const q = encodeURIComponent;

class Store {
  constructor(name = "default") {
    this.name = name;
  }

  /** Another store of the namespace (it must be granted too). */
  store(name) {
    return new Store(name);
  }

  _key(key) {
    return `/v1/kv/${q(this.name)}/keys/${q(key)}`;
  }

  /** The value at `key` as a Buffer, or null. */
  async get(key) {
    try {
      return await call("GET", this._key(key));
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  }

  /** The value at `key` as text (UTF-8), or null. */
  async getText(key) {
    const v = await this.get(key);
    return v === null ? null : v.toString("utf8");
  }

  /** Sets `key` to `value` (a string or Buffer); `{ ttl }` in seconds. Resolves to the version. */
  async set(key, value, options = {}) {
    const path = this._key(key) + (options.ttl !== undefined ? `?ttl_seconds=${Math.ceil(options.ttl)}` : "");
    const data = await call("PUT", path, Buffer.isBuffer(value) ? value : Buffer.from(String(value)));
    return JSON.parse(data.toString()).version;
  }

  /** Deletes `key`; resolves to whether it was there. */
  async delete(key) {
    try {
      await call("DELETE", this._key(key));
      return true;
    } catch (e) {
      if (e.status === 404) return false;
      throw e;
    }
  }

  /** Adds `by` to the integer at `key` (absent: 0), atomically; resolves to the sum. */
  async incr(key, by = 1) {
    const data = await call("POST", `/v1/kv/${q(this.name)}/incr/${q(key)}`, JSON.stringify({ by }));
    return JSON.parse(data.toString()).value;
  }

  /** Every key that starts with `prefix`, ascending. */
  async keys({ prefix = "" } = {}) {
    const out = [];
    let cursor;
    do {
      const params = new URLSearchParams({ prefix, limit: "1000" });
      if (cursor) params.set("cursor", cursor);
      const page = JSON.parse((await call("GET", `/v1/kv/${q(this.name)}/keys?${params}`)).toString());
      out.push(...page.keys);
      cursor = page.cursor;
    } while (cursor);
    return out;
  }
}

/** The app config of the function's namespace: text values, read-only, the keys in grants.config. */
class Config {
  /** The value of `key`, or `fallback` (default undefined) if it is not set. */
  async get(key, fallback) {
    try {
      return JSON.parse((await call("GET", `/v1/config/${q(key)}`)).toString()).value;
    } catch (e) {
      if (e.code === "not_found") return fallback;
      throw e;
    }
  }

  /** Every granted key and its value, as an object. */
  async all() {
    return JSON.parse((await call("GET", "/v1/config")).toString()).entries;
  }
}

async function callJson(method, path, value, headers) {
  const h = Object.assign({}, headers);
  let body;
  if (value !== undefined) {
    body = JSON.stringify(value);
    h["content-type"] = "application/json";
  }
  return JSON.parse((await call(method, path, body, h)).toString());
}

function conditions(options = {}) {
  const h = {};
  if (options.ifVersion !== undefined) h["if-match"] = `"${options.ifVersion}"`;
  if (options.ifAbsent) h["if-none-match"] = "*";
  return h;
}

/** A document collection of the function's namespace (in grants.docs). */
class Collection {
  constructor(name) {
    this.name = name;
  }

  _item(id) {
    return `/v1/docs/${q(this.name)}/${q(id)}`;
  }

  /** Creates a document with a server-made id; resolves to the id. */
  async create(data) {
    return (await callJson("POST", `/v1/docs/${q(this.name)}`, data)).id;
  }

  /** The document with its id, version and times, or null. */
  async getDoc(id) {
    try {
      return JSON.parse((await call("GET", this._item(id))).toString());
    } catch (e) {
      if (e.code === "not_found") return null;
      throw e;
    }
  }

  /** The document's data, or null. */
  async get(id) {
    const doc = await this.getDoc(id);
    return doc === null ? null : doc.data;
  }

  /** Creates or replaces a document; `{ ifVersion, ifAbsent }`. Resolves to its version. */
  async put(id, data, options = {}) {
    return (await callJson("PUT", this._item(id), data, conditions(options))).version;
  }

  /** Merges a patch (null removes a field); `{ ifVersion }`. Resolves to its version. */
  async patch(id, patch, options = {}) {
    return (await callJson("PATCH", this._item(id), patch, conditions(options))).version;
  }

  /** Deletes a document; resolves to whether it was there. */
  async delete(id, options = {}) {
    try {
      await call("DELETE", this._item(id), undefined, conditions(options));
      return true;
    } catch (e) {
      if (e.code === "not_found") return false;
      throw e;
    }
  }

  /** One page `{ docs, cursor?, count? }`; `orderBy` names fields, "-field" descending. */
  async query({ where, orderBy, limit, cursor, count } = {}) {
    const body = {};
    if (where !== undefined) body.where = where;
    if (orderBy) body.order_by = orderBy.map((f) => (f.startsWith("-") ? { field: f.slice(1), dir: "desc" } : { field: f }));
    if (limit !== undefined) body.limit = limit;
    if (cursor) body.cursor = cursor;
    if (count) body.count = true;
    return callJson("POST", `/v1/docs/${q(this.name)}/query`, body);
  }
}

/** The namespace's collections: `docs.collection("orders")`. */
class Docs {
  collection(name) {
    return new Collection(name);
  }

  /** Writes all or none: [{ op, collection, id?, data?, if_version? }]. */
  async transaction(writes) {
    return (await callJson("POST", "/v1/transactions", { writes })).results;
  }
}

exports.kv = new Store("default");
exports.docs = new Docs();
exports.Docs = Docs;
exports.Collection = Collection;
exports.config = new Config();
exports.Config = Config;
exports.Store = Store;
exports.NimbusError = NimbusError;
