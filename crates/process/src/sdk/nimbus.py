"""Nimbus's services for Python functions, importable as they are:

    from nimbus import config, docs, kv

    def lambda_handler(event, context):
        url = config.get("API_URL", "https://example.com")   # app config
        hits = kv.incr("hits")
        kv.set("last", str(hits), ttl=3600)
        cart = kv.store("cart")           # another store of the namespace
        order_id = docs["orders"].create({"status": "open", "hits": hits})
        return {"hits": hits, "items": list(cart.keys(prefix="item:"))}

A store must be in the function's grants.kv, a collection in its
grants.docs, a config key in its
grants.config. Config reads of one invocation all see the version current
at its first read. Calls work during an
invocation only (each has its own credential); a refusal raises NimbusError
with the API's code and message.
"""

import http.client
import json
import os
import socket
import urllib.parse

__all__ = ["config", "docs", "kv", "Collection", "Config", "Docs", "NimbusError", "Store"]


class NimbusError(Exception):
    """A refused or failed call: `status`, `code` (as the REST API's) and a message."""

    def __init__(self, status, code, message):
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message


class _Connection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def _call(method, path, body=None, headers=None):
    sock = os.environ.get("NIMBUS_API_SOCKET")
    token = os.environ.get("NIMBUS_API_TOKEN")
    if not sock or not token:
        raise NimbusError(0, "unavailable", "Nimbus's API is reachable only inside an invocation of a Nimbus function")
    conn = _Connection(sock, timeout=30)
    try:
        headers = dict(headers or {}, authorization="Bearer " + token)
        if body is not None:
            headers.setdefault("content-type", "application/octet-stream")
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status >= 400:
        try:
            err = json.loads(data)["error"]
            raise NimbusError(resp.status, err["code"], err["message"])
        except (ValueError, KeyError, TypeError):
            raise NimbusError(resp.status, "http_error", data.decode("utf-8", "replace"))
    return data


def _q(s):
    return urllib.parse.quote(s, safe="")


class Store:
    """A key-value store of the function's namespace."""

    def __init__(self, name="default"):
        self.name = name

    def store(self, name):
        """Another store of the namespace (it must be granted too)."""
        return Store(name)

    def _key(self, key):
        return f"/v1/kv/{_q(self.name)}/keys/{_q(key)}"

    def get(self, key):
        """The value at `key` as bytes, or None."""
        try:
            return _call("GET", self._key(key))
        except NimbusError as e:
            if e.status == 404:
                return None
            raise

    def get_text(self, key):
        """The value at `key` as text (UTF-8), or None."""
        v = self.get(key)
        return None if v is None else v.decode("utf-8")

    def set(self, key, value, ttl=None):
        """Sets `key` to `value` (bytes or text), expiring after `ttl`
        seconds if given. Returns the entry's version."""
        if isinstance(value, str):
            value = value.encode("utf-8")
        path = self._key(key) + (f"?ttl_seconds={int(ttl)}" if ttl is not None else "")
        return json.loads(_call("PUT", path, body=value))["version"]

    def delete(self, key):
        """Deletes `key`; returns whether it was there."""
        try:
            _call("DELETE", self._key(key))
            return True
        except NimbusError as e:
            if e.status == 404:
                return False
            raise

    def incr(self, key, by=1):
        """Adds `by` to the integer at `key` (absent: 0), atomically; returns the sum."""
        body = json.dumps({"by": by}).encode()
        return json.loads(_call("POST", f"/v1/kv/{_q(self.name)}/incr/{_q(key)}", body=body))["value"]

    def keys(self, prefix=""):
        """Every key that starts with `prefix`, ascending (fetched a page at a time)."""
        cursor = None
        while True:
            q = {"prefix": prefix, "limit": "1000"}
            if cursor:
                q["cursor"] = cursor
            page = json.loads(_call("GET", f"/v1/kv/{_q(self.name)}/keys?" + urllib.parse.urlencode(q)))
            yield from page["keys"]
            cursor = page.get("cursor")
            if not cursor:
                return


kv = Store("default")


class Config:
    """The app config of the function's namespace (`nimbus config set`):
    text values, read-only, the keys in grants.config."""

    def get(self, key, default=None):
        """The value of `key`, or `default` if it is not set."""
        try:
            return json.loads(_call("GET", f"/v1/config/{_q(key)}"))["value"]
        except NimbusError as e:
            if e.code == "not_found":
                return default
            raise

    def all(self):
        """Every granted key and its value, as a dict."""
        return json.loads(_call("GET", "/v1/config"))["entries"]


config = Config()


def _json(method, path, value=None, headers=None):
    body = None if value is None else json.dumps(
        value, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")
    h = dict(headers or {})
    if body is not None:
        h["content-type"] = "application/json"
    return json.loads(_call(method, path, body=body, headers=h))


def _conditions(if_version=None, if_absent=False):
    if if_version is not None and if_absent:
        raise ValueError("give if_version or if_absent, not both")
    h = {}
    if if_version is not None:
        h["if-match"] = '"%d"' % if_version
    if if_absent:
        h["if-none-match"] = "*"
    return h


class Collection:
    """A document collection of the function's namespace (in grants.docs).

    Documents are dicts; each write returns the document's new version,
    which `if_version=` makes a later write conditional on."""

    def __init__(self, name):
        self.name = name

    def _item(self, id):
        return f"/v1/docs/{_q(self.name)}/{_q(id)}"

    def create(self, data):
        """Creates a document with a server-made id; returns the id."""
        return _json("POST", f"/v1/docs/{_q(self.name)}", data)["id"]

    def get_doc(self, id):
        """The document with its id, version and times, or None."""
        try:
            return json.loads(_call("GET", self._item(id)))
        except NimbusError as e:
            if e.code == "not_found":
                return None
            raise

    def get(self, id):
        """The document's data (a dict), or None."""
        doc = self.get_doc(id)
        return None if doc is None else doc["data"]

    def put(self, id, data, if_version=None, if_absent=False):
        """Creates or replaces a document; returns its version."""
        return _json("PUT", self._item(id), data, _conditions(if_version, if_absent))["version"]

    def patch(self, id, patch, if_version=None):
        """Merges `patch` into the document (None removes a field); returns its version."""
        return _json("PATCH", self._item(id), patch, _conditions(if_version))["version"]

    def delete(self, id, if_version=None):
        """Deletes a document; returns whether it was there."""
        try:
            _call("DELETE", self._item(id), headers=_conditions(if_version))
            return True
        except NimbusError as e:
            if e.code == "not_found":
                return False
            raise

    def query(self, where=None, order_by=None, limit=None, cursor=None, count=False):
        """One page: {"docs": [...], "cursor"?: ..., "count"?: n}. `where` is
        a filter ({"field", "op", "value"} or {"and"/"or": [...]}); `order_by`
        a list of field names, "-field" for descending."""
        q = {}
        if where is not None:
            q["where"] = where
        if order_by:
            q["order_by"] = [
                {"field": f[1:], "dir": "desc"} if f.startswith("-") else {"field": f}
                for f in order_by
            ]
        if limit is not None:
            q["limit"] = limit
        if cursor:
            q["cursor"] = cursor
        if count:
            q["count"] = True
        return _json("POST", f"/v1/docs/{_q(self.name)}/query", q)

    def find(self, where=None, order_by=None):
        """Every matching document, fetched a page at a time."""
        cursor = None
        while True:
            page = self.query(where=where, order_by=order_by, limit=1000, cursor=cursor)
            yield from page["docs"]
            cursor = page.get("cursor")
            if not cursor:
                return


class Docs:
    """The namespace's document collections: docs["orders"]."""

    def collection(self, name):
        return Collection(name)

    def __getitem__(self, name):
        return Collection(name)

    def transaction(self, writes):
        """Writes all or none: a list of {"op": create|put|patch|delete,
        "collection", "id"?, "data"?, "if_version"?}; returns their results."""
        return _json("POST", "/v1/transactions", {"writes": writes})["results"]


docs = Docs()
