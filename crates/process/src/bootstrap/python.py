# Nimbus Python worker bootstrap.
#
# argv: <protocol in fd> <protocol out fd> <code dir> <handler> <log nonce>
#
# Protocol (one JSON document per line, UTF-8):
#   worker -> host  {"ready": {"init_ms": N}}            after the handler module was imported
#                   {"init_error": {"errorType", "errorMessage"}}   then the worker exits
#   host -> worker  {"event": {...}, "context": {...}}
#   worker -> host  {"ok": <value>} | {"error": {"errorType", "errorMessage", "stackTrace"}}
# fd 1 (print) and fd 2 are the function's logs; after each invocation both
# get the end marker "\0nimbus-log-end:<nonce>\0" before the result is sent.
import sys
import os


def _nimbus_codec():
    """(dumps, loads) for the protocol, on the C accelerator `_json` alone.

    `import json` pulls in `re` and `enum` and costs ~7 ms of every cold
    start; the protocol needs none of it. Falls back on `json` where `_json`
    is missing. Same output as json.dumps(obj, separators=(",", ":"),
    allow_nan=False, default=...)."""
    try:
        import _json

        _json.make_encoder
        _json.make_scanner
    except (ImportError, AttributeError):
        import json

        def dumps(obj, default=None):
            return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=default)

        return dumps, json.loads

    def no_default(o):
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    def dumps(obj, default=None):
        encode = _json.make_encoder(
            {}, default or no_default, _json.encode_basestring_ascii, None, ":", ",", False, False, False
        )
        return "".join(encode(obj, 0))

    class Context:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
        memo = {}

    scan = _json.make_scanner(Context())

    def loads(data):
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        try:
            obj, end = scan(text, 0)
        except StopIteration as e:
            raise ValueError(f"invalid JSON at {e.value}") from None
        if text[end:].strip():
            raise ValueError(f"extra data at {end}")
        return obj

    return dumps, loads


def _nimbus_main():
    # decimal and traceback are imported when first needed, and json not
    # at all: they cost several milliseconds of every cold start.
    import time

    dumps, loads = _nimbus_codec()

    started = time.monotonic()
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    code_dir, handler_spec, nonce = sys.argv[3], sys.argv[4], sys.argv[5]
    marker = b"\0nimbus-log-end:" + nonce.encode() + b"\0"
    main_pid = os.getpid()
    sys.argv = [""]

    os.set_inheritable(in_fd, False)
    os.set_inheritable(out_fd, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    proto_in = os.fdopen(in_fd, "rb", buffering=65536)
    proto_out = os.fdopen(out_fd, "wb", buffering=65536)

    def close_protocol_in_child():
        # A forked child must never speak the protocol.
        for fd in (in_fd, out_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    os.register_at_fork(after_in_child=close_protocol_in_child)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass

    def send(obj):
        proto_out.write(dumps(obj).encode() + b"\n")
        proto_out.flush()

    def default(o):
        import decimal

        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    def error_of(e, tb=None):
        import traceback

        frames = traceback.format_tb(tb) if tb is not None else []
        return {
            "errorType": type(e).__name__,
            "errorMessage": str(e),
            "stackTrace": frames,
        }

    def end_logs():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        for fd in (1, 2):
            try:
                os.write(fd, marker)
            except OSError:
                pass

    sys.path.insert(0, code_dir)
    # The platform's `nimbus` module, after the function's own code.
    if os.environ.get("NIMBUS_SDK_PYTHON"):
        sys.path.append(os.environ["NIMBUS_SDK_PYTHON"])
    try:
        os.chdir(code_dir)
    except OSError:
        pass
    module_name, _, func_name = handler_spec.replace("/", ".").rpartition(".")
    try:
        __import__(module_name)
        module = sys.modules[module_name]
    except SyntaxError as e:
        import traceback

        traceback.print_exc()
        end_logs()
        send({"init_error": {"errorType": "Runtime.UserCodeSyntaxError", "errorMessage": f"Syntax error in module '{module_name}': {e}"}})
        os._exit(1)
    except Exception as e:
        import traceback

        traceback.print_exc()
        end_logs()
        send({"init_error": {"errorType": "Runtime.ImportModuleError", "errorMessage": f"Unable to import module '{module_name}': {e}"}})
        os._exit(1)
    handler = getattr(module, func_name, None)
    if not callable(handler):
        end_logs()
        send({"init_error": {"errorType": "Runtime.HandlerNotFound", "errorMessage": f"Handler '{func_name}' missing on module '{module_name}'"}})
        os._exit(1)

    def children():
        # This process's children. The sandbox has its own pid namespace,
        # so /proc lists only the worker's few processes.
        me = str(main_pid).encode()
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/" + entry + "/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            rest = stat[stat.rfind(b")") + 2 :].split()
            if len(rest) > 1 and rest[1] == me:
                found.add(int(entry))
        return found

    def reap():
        # Processes an invocation leaves running are killed by Nimbus when
        # it ends; their zombies would hold pids (and the worker's task
        # limit) until reaped. Children started during initialisation
        # belong to the handler's module and are left to it.
        try:
            if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return
        except (ChildProcessError, OSError):
            return
        for pid in children() - init_children:
            try:
                os.waitpid(pid, os.WNOHANG)
            except OSError:
                pass

    init_children = children()
    send({"ready": {"init_ms": round((time.monotonic() - started) * 1000, 3)}})

    class LambdaContext:
        def __init__(self, c):
            self.aws_request_id = c["invocation_id"]
            self.function_name = c["function_name"]
            self.function_version = str(c["function_version"])
            self.memory_limit_in_mb = str(c["memory_limit_mib"])
            self.invoked_function_arn = c["invoked_function_arn"]
            self.log_group_name = "/nimbus/" + c["function_name"]
            self.log_stream_name = c["invocation_id"]
            self.identity = None
            self.client_context = None
            self._deadline_ms = c["deadline_ms"]

        def get_remaining_time_in_millis(self):
            return max(0, int(self._deadline_ms - time.time() * 1000))

    while True:
        line = proto_in.readline()
        if not line:
            os._exit(0)
        reap()
        msg = loads(line)
        context = LambdaContext(msg["context"])
        # This invocation's credential for Nimbus's local API.
        os.environ["NIMBUS_API_TOKEN"] = msg["context"].get("nimbus_token") or ""
        try:
            result = handler(msg["event"], context)
        except Exception as e:
            if os.getpid() != main_pid:
                os._exit(1)
            tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
            err = error_of(e, tb)
            print(f"[ERROR] {err['errorType']}: {err['errorMessage']}", file=sys.stderr)
            print("Traceback (most recent call last):", file=sys.stderr)
            print("".join(err["stackTrace"]), end="", file=sys.stderr)
            reply = {"error": err}
        else:
            if os.getpid() != main_pid:
                os._exit(0)
            reply = {"ok": result}
        try:
            payload = dumps(reply, default).encode()
        except Exception as e:
            print(f"[ERROR] Runtime.MarshalError: Unable to marshal response: {e}", file=sys.stderr)
            payload = dumps({"error": {"errorType": "Runtime.MarshalError", "errorMessage": f"Unable to marshal response: {e}", "stackTrace": []}}).encode()
        end_logs()
        proto_out.write(payload + b"\n")
        proto_out.flush()


_nimbus_main()
