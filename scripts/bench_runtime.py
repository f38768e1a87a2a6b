"""The measuring half of scripts/bench: a fake Lambda Runtime API on 127.0.0.1, and a table.

For every function binary of the workspace (functions/*) plus the bare `lambda_runtime` echo
binary (tests/bare-runtime), from target/release:
- size of the binary;
- start-up: median over --runs spawns of the time from spawn to the first
  `GET /2018-06-01/runtime/invocation/next` (the request is then dropped and the process killed);
- peak RSS: the fake API answers /next with infra/events/<binary>.json, waits for the
  POST .../response (or .../error), then VmHWM is read from /proc/<pid>/status.

Run by scripts/bench after start_moto (AWS_ENDPOINT_URL and dummy credentials exported); it
creates the table (from infra/template.yaml) and verifies the sender in moto first. The
invocations run in the order of tests/tests/event_replay.rs, so that signup-events creates the
user every later event names and each function does its real work against moto.
"""

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
BARE = "bare-runtime"
NEXT_PATH = "/2018-06-01/runtime/invocation/next"
MIB = 1 << 20
# Targets, printed next to the table and never asserted.
STARTUP_RATIO_MAX = 1.5
BOOTSTRAP_MAX_BYTES = 5 * MIB
RSS_MAX_BYTES = 12 * MIB
# The order of tests/tests/event_replay.rs: sign-up first, confirmation last.
FLOW = [
    "signup-events",
    "singularity-verification-cooldown",
    "singularity-send-verification",
    "backendless-resend-confirmation",
    "mastodon-resend-confirmation",
    "tennpay-send-confirmation",
    "backendless-create-confirmation-url",
    "confirm-page",
    "singularity-verify-email",
]
BARE_EVENT = {"bench": "echo", "numbers": [1, 2, 3], "nested": {"ok": True}}
INVOCATION_TIMEOUT_S = 30.0


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- workspace and environment


def workspace_binaries() -> tuple[Path, list[str]]:
    """The release directory and the function binaries (every bin target under functions/)."""
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    functions_dir = ROOT / "functions"
    binaries = []
    for package in meta["packages"]:
        if Path(package["manifest_path"]).parent.parent != functions_dir:
            continue
        binaries += [t["name"] for t in package["targets"] if "bin" in t["kind"]]
    order = {name: i for i, name in enumerate(FLOW)}
    binaries.sort(key=lambda name: (order.get(name, len(FLOW)), name))
    return Path(meta["target_directory"]) / "release", binaries


def function_env(binary: str, runtime_api: str) -> dict[str, str]:
    """What Lambda would set, plus env.json and the moto endpoint; nothing else (no HOME)."""
    env = dict(json.loads((ROOT / "infra/events/env.json").read_text())["Parameters"])
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": binary,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_EC2_METADATA_DISABLED"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def event_for(binary: str) -> bytes:
    if binary == BARE:
        return json.dumps(BARE_EVENT).encode()
    return (ROOT / "infra/events" / f"{binary}.json").read_bytes()


def spawn(path: Path, env: dict[str, str], out_fd: int) -> int:
    return os.posix_spawn(
        str(path),
        [str(path)],
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, out_fd, 1), (os.POSIX_SPAWN_DUP2, out_fd, 2)],
    )


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


# ---------------------------------------------------------------- moto set-up


class _CfnLoader(yaml.SafeLoader):
    """Reads a CloudFormation template, keeping intrinsic functions (!Ref, !If, ...) as plain data."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def set_up_moto() -> None:
    params = json.loads((ROOT / "infra/events/env.json").read_text())["Parameters"]
    template = yaml.load((ROOT / "infra/template.yaml").read_text(), Loader=_CfnLoader)
    tables = [r for r in template["Resources"].values() if r.get("Type") == "AWS::DynamoDB::Table"]
    if len(tables) != 1:
        raise SystemExit(f"expected one AWS::DynamoDB::Table in infra/template.yaml, found {len(tables)}")
    props = tables[0]["Properties"]
    create = {
        "TableName": params["TABLE_NAME"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        create["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    # boto3 reads AWS_DEFAULT_REGION; start_moto exports the SDK's AWS_REGION.
    region = os.environ.get("AWS_REGION", "us-east-1")
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(**create)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") is True:
        dynamodb.update_time_to_live(
            TableName=params["TABLE_NAME"],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    boto3.client("sesv2", region_name=region).create_email_identity(EmailIdentity=params["SENDER_ADDRESS"])
    keys = ", ".join(f"{k['AttributeName']} {k['KeyType']}" for k in props["KeySchema"])
    log(f"moto: table {params['TABLE_NAME']} ({keys}, {create['BillingMode']}), sender {params['SENDER_ADDRESS']} verified")


# ---------------------------------------------------------------- start-up


def measure_startup(path: Path, binary: str, listener: socket.socket, devnull: int) -> float:
    """Milliseconds from spawn to the request line of the first GET /next."""
    env = function_env(binary, "127.0.0.1:%d" % listener.getsockname()[1])
    started = time.perf_counter_ns()
    pid = spawn(path, env, devnull)
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        kill(pid)
        raise RuntimeError(f"{binary}: no connection to the Runtime API within {listener.gettimeout()} s") from None
    with conn:
        conn.settimeout(10)
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        arrived = time.perf_counter_ns()
        kill(pid)
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    if not line.startswith(f"GET {NEXT_PATH} "):
        raise RuntimeError(f"{binary}: first request was {line!r}, not GET /next")
    return (arrived - started) / 1e6


# ---------------------------------------------------------------- one invocation


class Invocation:
    """State of one fake Runtime API serving exactly one event."""

    def __init__(self, binary: str):
        self.binary = binary
        self.event = event_for(binary)
        self.request_id = str(uuid.uuid4())
        self.served = False
        self.sent_at = 0
        self.answered_at = 0
        self.outcome: tuple[str, bytes] | None = None  # ("response" | "error" | "init-error", body)
        self.done = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()


def handler_for(inv: Invocation):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
            pass

        def do_GET(self):
            if self.path != NEXT_PATH:
                return self.reply(404, b'{"errorMessage":"not found"}')
            with inv.lock:
                first = not inv.served
                inv.served = True
            if not first:
                inv.stop.wait(INVOCATION_TIMEOUT_S + 5)  # hold the next /next until the process is killed
                self.close_connection = True
                return
            deadline_ms = int(time.time() * 1000) + 10_000
            trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(inv.event)))
            self.send_header("Lambda-Runtime-Aws-Request-Id", inv.request_id)
            self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:us-east-1:123456789012:function:{inv.binary}"
            )
            self.send_header("Lambda-Runtime-Trace-Id", trace)
            self.end_headers()
            self.wfile.write(inv.event)
            self.wfile.flush()
            inv.sent_at = time.perf_counter_ns()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            prefix = f"/2018-06-01/runtime/invocation/{inv.request_id}/"
            if self.path == prefix + "response":
                kind = "response"
            elif self.path == prefix + "error":
                kind = "error"
            elif self.path == "/2018-06-01/runtime/init/error":
                kind = "init-error"
            else:
                return self.reply(404, b'{"errorMessage":"not found"}')
            inv.answered_at = time.perf_counter_ns()
            self.reply(202, b'{"status":"OK"}')
            inv.outcome = (kind, body)
            inv.done.set()

        def reply(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def describe(binary: str, outcome: tuple[str, bytes] | None) -> tuple[str, bool]:
    """A short result for the table, and whether the invocation worked."""
    if outcome is None:
        return "no answer", False
    kind, body = outcome
    try:
        value = json.loads(body) if body else None
    except ValueError:
        value = None
    if kind != "response":
        if isinstance(value, dict):
            return f"{kind}: {value.get('errorType')}: {value.get('errorMessage')}", False
        return f"{kind}: {body[:200]!r}", False
    if binary == BARE:
        return ("echo ok", True) if value == BARE_EVENT else (f"echo differs: {body[:80]!r}", False)
    if isinstance(value, dict) and "statusCode" in value:
        return f"HTTP {value['statusCode']}", True
    if isinstance(value, dict) and "batchItemFailures" in value:
        failures = len(value["batchItemFailures"])
        return f"SQS batch, {failures} failure{'s' if failures != 1 else ''}", failures == 0
    return f"response {body[:80]!r}", True


def vm_hwm_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return None
    return None


def measure_invocation(path: Path, binary: str, log_dir: Path) -> dict:
    inv = Invocation(binary)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(inv))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log_path = log_dir / f"{binary}.log"
    result = {"log": log_path}
    with open(log_path, "wb") as out:
        pid = spawn(path, function_env(binary, "127.0.0.1:%d" % server.server_address[1]), out.fileno())
    exit_status = None
    try:
        deadline = time.monotonic() + INVOCATION_TIMEOUT_S
        while not inv.done.wait(0.01):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                exit_status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                break
        if exit_status is None:
            result["hwm"] = vm_hwm_bytes(pid)
    finally:
        if exit_status is None:
            kill(pid)
        inv.stop.set()
        server.shutdown()
        server.server_close()
    if exit_status is not None:
        result["result"], result["ok"] = f"exited {exit_status} before answering", False
    elif not inv.done.is_set():
        result["result"], result["ok"] = f"no answer within {INVOCATION_TIMEOUT_S:.0f} s", False
    else:
        result["result"], result["ok"] = describe(binary, inv.outcome)
        result["invoke_ms"] = (inv.answered_at - inv.sent_at) / 1e6 if inv.sent_at else None
        result["body"] = inv.outcome[1] if inv.outcome else b""
    return result


# ---------------------------------------------------------------- table


def render(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def mark(ok: bool) -> str:
    return "  " if ok else " !"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="start-up runs per binary (default 20)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".local/bench", help="function output of the invocations")
    parser.add_argument("--bin-dir", type=Path, help="binaries to measure (default: the workspace's target/release)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    release, functions = workspace_binaries()
    bin_dir = args.bin_dir or release
    binaries = [BARE] + functions
    paths = {b: bin_dir / b for b in binaries}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit("missing release binaries (build without --no-build):\n  " + "\n  ".join(missing))
    args.log_dir.mkdir(parents=True, exist_ok=True)

    set_up_moto()

    # Start-up: one untimed warm-up spawn each (page cache), then the runs round-robin so that
    # any drift of the machine spreads evenly over the binaries.
    log(f"start-up: {args.runs} runs of {len(binaries)} binaries, round-robin")
    times: dict[str, list[float]] = {b: [] for b in binaries}
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(10)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for binary in binaries:
            measure_startup(paths[binary], binary, listener, devnull)
        for _ in range(args.runs):
            for binary in binaries:
                times[binary].append(measure_startup(paths[binary], binary, listener, devnull))
    finally:
        os.close(devnull)
        listener.close()

    log("one invocation each, against moto, in the order of tests/tests/event_replay.rs")
    invocations = {}
    for binary in binaries:
        invocations[binary] = measure_invocation(paths[binary], binary, args.log_dir)
        log(f"  {binary}: {invocations[binary]['result']}")

    bare_median = statistics.median(times[BARE])
    header = [
        "binary",
        "size (bytes)",
        "size (MB)",
        "start-up median (ms)",
        "min-max (ms)",
        "x bare",
        "peak RSS (MB)",
        "1st invoke (ms)",
        "invocation",
    ]
    rows = [header]
    for binary in binaries:
        size = paths[binary].stat().st_size
        median = statistics.median(times[binary])
        ratio = median / bare_median
        inv = invocations[binary]
        hwm = inv.get("hwm")
        invoke_ms = inv.get("invoke_ms")
        rows.append(
            [
                binary + (" (baseline)" if binary == BARE else ""),
                f"{size:,}",
                f"{size / MIB:.2f}" + mark(size <= BOOTSTRAP_MAX_BYTES),
                f"{median:.2f}",
                f"{min(times[binary]):.2f}-{max(times[binary]):.2f}",
                f"{ratio:.2f}" + mark(ratio <= STARTUP_RATIO_MAX),
                (f"{hwm / MIB:.1f}" + mark(hwm < RSS_MAX_BYTES)) if hwm else "n/a !",
                f"{invoke_ms:.1f}" if invoke_ms is not None else "n/a",
                inv["result"],
            ]
        )
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    print()
    print(
        f"mailconfirm Lambda binaries in {bin_dir}, {platform.machine()} ({cpu}, {os.cpu_count()} cores), "
        f"{rustc}, {args.runs} start-up runs each"
    )
    print()
    print(render(rows, right={1, 2, 3, 4, 5, 6, 7}))
    print()
    print(
        f"Targets (not asserted; ! marks a miss): start-up <= {STARTUP_RATIO_MAX}x bare "
        f"(bare median {bare_median:.2f} ms) | bootstrap <= {BOOTSTRAP_MAX_BYTES // MIB} MB | "
        f"peak RSS < {RSS_MAX_BYTES // MIB} MB."
    )
    print(
        "Start-up = spawn to the request line of the first GET /next. Peak RSS = VmHWM after one invocation "
        "(event infra/events/<binary>.json, answered by moto). 1st invoke = event sent to response received. "
        f"MB = 2^20 bytes. Function output: {args.log_dir}/<binary>.log."
    )
    failed = [b for b in binaries if not invocations[b]["ok"]]
    for binary in failed:
        print(f"invocation problem: {binary}: {invocations[binary]['result']} (log: {invocations[binary]['log']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
