"""Nimbus's services for Python functions, importable as they are:

    from nimbus import config, kv

    def lambda_handler(event, context):
        url = config.get("API_URL", "https://example.com")   # app config
        hits = kv.incr("hits")
        kv.set("last", str(hits), ttl=3600)
        cart = kv.store("cart")           # another store of the namespace
        return {"hits": hits, "items": list(cart.keys(prefix="item:"))}

A store must be in the function's grants.kv, a config key in its
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

__all__ = ["config", "kv", "Config", "NimbusError", "Store"]


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


def _call(method, path, body=None):
    sock = os.environ.get("NIMBUS_API_SOCKET")
    token = os.environ.get("NIMBUS_API_TOKEN")
    if not sock or not token:
        raise NimbusError(0, "unavailable", "Nimbus's API is reachable only inside an invocation of a Nimbus function")
    conn = _Connection(sock, timeout=30)
    try:
        headers = {"authorization": "Bearer " + token}
        if body is not None:
            headers["content-type"] = "application/octet-stream"
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
