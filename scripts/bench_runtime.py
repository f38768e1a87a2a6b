"""The measuring half of scripts/bench: a fake Lambda Runtime API, a counting proxy in front of
moto, and two tables.

For every function binary of the workspace (functions/*) and the bare `lambda_runtime` echo
binary (tests/bare-runtime), from the release directory:
- size of the x86_64 binary, and of the arm64 `bootstrap` in infra/.aws-sam/build when
  `scripts/build` made one;
- per round (--runs rounds, every binary once per round, interleaved): moto is reset and set up
  from infra/template.yaml, then each binary is spawned in the order of
  tests/tests/event_replay.rs (sign-up first, so later events find their user) and
    - init = spawn to the request line of its first `GET /next`;
    - first invocation = infra/events/<binary>.json sent, to its `POST .../response` (or error)
      received, minus the time its AWS calls spent in the proxy (moto's time, not the function's);
    - the AWS calls of that invocation, by operation, as the proxy saw them;
- for --warm-functions, --warm invocations of the same event in one process after the first:
  own time (as above) median and p99, CPU time per invocation (utime + stime from /proc), peak
  RSS (VmHWM), and the outcomes.

Run by scripts/bench after start_moto (AWS_ENDPOINT_URL and dummy credentials exported). Every
local server here sets TCP_NODELAY: Python's http.server writes headers and body separately, and
Nagle plus delayed ACKs would add ~40 ms to each reply on a kept-alive connection.
"""

import argparse
import collections
import http.client
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
BARE = "bare-runtime"
NEXT_PATH = "/2018-06-01/runtime/invocation/next"
MB = 1_000_000
MIB = 1 << 20
# Targets, printed next to the tables and never asserted.
INIT_FIRST_RATIO_MAX = 2.0
X86_64_MAX_BYTES = 5.5 * MB
ARM64_MAX_BYTES = 5 * MB
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
    "backendless-app-info",
    "confirm-page",
    "singularity-verify-email",
]
WARM_DEFAULT = ["singularity-send-verification", "singularity-verification-cooldown", "confirm-page"]
BARE_EVENT = {"bench": "echo", "numbers": [1, 2, 3], "nested": {"ok": True}}
TIMEOUT_S = 30.0


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def now_ns() -> int:
    return time.perf_counter_ns()


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


class _CfnLoader(yaml.SafeLoader):
    """Reads a CloudFormation template, keeping intrinsic functions (!Ref, !If, ...) as plain data."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template() -> dict:
    return yaml.load((ROOT / "infra/template.yaml").read_text(), Loader=_CfnLoader)


def arm64_sizes() -> dict[str, int]:
    """Binary name -> size of the arm64 bootstrap that `sam build` left in infra/.aws-sam/build."""
    build = ROOT / "infra/.aws-sam/build"
    sizes = {}
    for logical_id, resource in template()["Resources"].items():
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        bootstrap = build / logical_id / "bootstrap"
        if binary and bootstrap.is_file():
            sizes[binary] = bootstrap.stat().st_size
    return sizes


def function_env(binary: str, runtime_api: str, aws_endpoint: str) -> dict[str, str]:
    """What Lambda would set, plus env.json and the proxy in front of moto; nothing else (no HOME)."""
    env = dict(json.loads((ROOT / "infra/events/env.json").read_text())["Parameters"])
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": binary,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_ENDPOINT_URL": aws_endpoint,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_EC2_METADATA_DISABLED"):
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return None
    return None


# ---------------------------------------------------------------- moto and the counting proxy


def set_up_moto(moto: str) -> None:
    """Empties moto, then creates the table (from infra/template.yaml) and verifies the sender."""
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10).read()
    params = json.loads((ROOT / "infra/events/env.json").read_text())["Parameters"]
    tables = [r for r in template()["Resources"].values() if r.get("Type") == "AWS::DynamoDB::Table"]
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
    dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=moto)
    dynamodb.create_table(**create)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") is True:
        dynamodb.update_time_to_live(
            TableName=params["TABLE_NAME"],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    boto3.client("sesv2", region_name=region, endpoint_url=moto).create_email_identity(
        EmailIdentity=params["SENDER_ADDRESS"]
    )


SES_OPERATIONS = {("POST", "/v2/email/outbound-emails"): "SendEmail"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


def operation_of(method: str, path: str, headers) -> str:
    target = headers.get("X-Amz-Target")
    if target:  # DynamoDB_20120810.PutItem
        return "DynamoDB " + target.rsplit(".", 1)[-1]
    scope = headers.get("Authorization", "").split("Credential=", 1)[-1].split(",", 1)[0].split("/")
    service = scope[3] if len(scope) > 3 else "?"
    if service == "ses":
        return "SES " + SES_OPERATIONS.get((method, urllib.parse.urlsplit(path).path), f"{method} {path}")
    return f"{service} {method} {path}"


class AwsProxy:
    """Forwards every request to moto and records (operation, ns spent) for each."""

    def __init__(self, upstream: str):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
                pass

            def forward(self):
                started = now_ns()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn = getattr(proxy.local, "conn", None)
                for attempt in (1, 2):  # a kept-alive connection to moto may have been closed
                    if conn is None:
                        conn = http.client.HTTPConnection(*proxy.upstream, timeout=TIMEOUT_S)
                        proxy.local.conn = conn
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        response = conn.getresponse()
                        payload = response.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        conn = proxy.local.conn = None
                        if attempt == 2:
                            raise
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                with proxy.lock:
                    proxy.calls.append((operation_of(self.command, self.path, self.headers), now_ns() - started))

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def mark(self) -> int:
        with self.lock:
            return len(self.calls)

    def since(self, mark: int) -> list[tuple[str, int]]:
        with self.lock:
            return self.calls[mark:]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- the fake Runtime API


class FakeRuntime:
    """A Runtime API that hands out the same event each time the bench says so."""

    def __init__(self, binary: str):
        self.binary = binary
        self.event = event_for(binary)
        self.next_arrivals: queue.Queue[int] = queue.Queue()
        self.permits = threading.Semaphore(0)
        self.results: queue.Queue[tuple[str, bytes, int, int]] = queue.Queue()
        self.sent: dict[str, int] = {}
        self.stopping = threading.Event()
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
                pass

            def do_GET(self):
                if self.path != NEXT_PATH:
                    return self.reply(404, b'{"errorMessage":"not found"}')
                runtime.next_arrivals.put(now_ns())
                while not runtime.permits.acquire(timeout=0.5):
                    if runtime.stopping.is_set():
                        self.close_connection = True
                        return
                request_id = str(uuid.uuid4())
                deadline_ms = int(time.time() * 1000) + 10_000
                trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(runtime.event)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    f"arn:aws:lambda:us-east-1:123456789012:function:{runtime.binary}",
                )
                self.send_header("Lambda-Runtime-Trace-Id", trace)
                self.end_headers()
                # Before the body goes out: a fast function answers before this thread runs on.
                runtime.sent[request_id] = now_ns()
                self.wfile.write(runtime.event)
                self.wfile.flush()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answered = now_ns()
                parts = self.path.split("/")
                if self.path == "/2018-06-01/runtime/init/error":
                    kind, sent = "init-error", answered
                elif len(parts) == 6 and parts[5] in ("response", "error") and parts[4] in runtime.sent:
                    kind, sent = parts[5], runtime.sent.pop(parts[4])
                else:
                    return self.reply(404, b'{"errorMessage":"not found"}')
                self.reply(202, b'{"status":"OK"}')
                runtime.results.put((kind, body, sent, answered))

            def reply(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = "127.0.0.1:%d" % self.server.server_address[1]

    def wait_next(self, pid: int) -> int:
        """When the process asked for its next event; raises if it exited or took too long."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                return self.next_arrivals.get(timeout=0.01)
            except queue.Empty:
                finished, status = os.waitpid(pid, os.WNOHANG)
                if finished:
                    raise RuntimeError(f"{self.binary}: exited {os.waitstatus_to_exitcode(status)} before GET /next")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.binary}: no GET /next within {TIMEOUT_S:.0f} s")

    def invoke(self) -> tuple[str, bytes, int, int]:
        """Hands out one event and waits for its answer: (kind, body, sent ns, answered ns)."""
        self.permits.release()
        try:
            return self.results.get(timeout=TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"{self.binary}: no answer within {TIMEOUT_S:.0f} s") from None

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def describe(binary: str, kind: str, body: bytes) -> tuple[str, bool]:
    """A short outcome for the tables, and whether the invocation worked."""
    try:
        value = json.loads(body) if body else None
    except ValueError:
        value = None
    if kind != "response":
        if isinstance(value, dict):
            return f"{kind}: {value.get('errorType')}: {value.get('errorMessage')}"[:80], False
        return f"{kind}: {body[:80]!r}", False
    if binary == BARE:
        return ("echo ok", True) if value == BARE_EVENT else (f"echo differs: {body[:80]!r}", False)
    if isinstance(value, dict) and "statusCode" in value:
        return f"HTTP {value['statusCode']}", True
    if isinstance(value, dict) and "batchItemFailures" in value:
        failures = len(value["batchItemFailures"])
        return f"SQS batch, {failures} failure{'s' if failures != 1 else ''}", failures == 0
    return f"response {body[:80]!r}", True


def calls_text(calls: list[str]) -> str:
    if not calls:
        return "-"
    counts = collections.Counter(calls)
    return ", ".join(f"{op}" + (f" x{n}" if n > 1 else "") for op, n in counts.items())


# ---------------------------------------------------------------- measurements


class Measured:
    def __init__(self):
        self.init_ms: list[float] = []
        self.first_own_ms: list[float] = []
        self.first_aws_ms: list[float] = []
        self.calls: list[str] | None = None
        self.outcome = ""
        self.ok = True
        self.hwm: int | None = None


def first_invocation(path: Path, binary: str, proxy: AwsProxy, out_fd: int, m: Measured) -> None:
    runtime = FakeRuntime(binary)
    started = now_ns()
    pid = spawn(path, function_env(binary, runtime.address, proxy.url), out_fd)
    try:
        asked = runtime.wait_next(pid)
        mark = proxy.mark()
        kind, body, sent, answered = runtime.invoke()
        runtime.wait_next(pid)  # the invocation is over once the next one is asked for
        m.hwm = max(m.hwm or 0, vm_hwm_bytes(pid) or 0) or None
    finally:
        kill(pid)
        runtime.close()
    calls = proxy.since(mark)
    aws_ns = sum(ns for _, ns in calls)
    m.init_ms.append((asked - started) / 1e6)
    m.first_own_ms.append((answered - sent - aws_ns) / 1e6)
    m.first_aws_ms.append(aws_ns / 1e6)
    outcome, ok = describe(binary, kind, body)
    ops = [op for op, _ in calls]
    if m.calls is None:
        m.calls, m.outcome = ops, outcome
    elif (ops, outcome) != (m.calls, m.outcome):
        m.outcome = f"{m.outcome} (varies: {outcome})"
    m.ok = m.ok and ok


def warm(path: Path, binary: str, proxy: AwsProxy, out_fd: int, count: int) -> dict:
    runtime = FakeRuntime(binary)
    pid = spawn(path, function_env(binary, runtime.address, proxy.url), out_fd)
    own: list[float] = []
    outcomes: collections.Counter[str] = collections.Counter()
    calls = 0
    try:
        runtime.wait_next(pid)
        runtime.invoke()  # the first invocation builds what is built on first use
        runtime.wait_next(pid)
        cpu_before = cpu_seconds(pid)
        for _ in range(count):
            mark = proxy.mark()
            kind, body, sent, answered = runtime.invoke()
            runtime.wait_next(pid)
            made = proxy.since(mark)
            calls += len(made)
            own.append((answered - sent - sum(ns for _, ns in made)) / 1e6)
            outcomes[describe(binary, kind, body)[0]] += 1
        cpu = cpu_seconds(pid) - cpu_before
        hwm = vm_hwm_bytes(pid)
    finally:
        kill(pid)
        runtime.close()
    own.sort()
    return {
        "median": statistics.median(own),
        "p99": own[min(len(own) - 1, int(len(own) * 0.99))],
        "cpu_ms": cpu * 1000 / count,
        "hwm": hwm,
        "calls": calls / count,
        "outcomes": ", ".join(f"{o} x{n}" for o, n in outcomes.most_common()),
    }


# ---------------------------------------------------------------- tables


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


def size_cell(size: int | None, limit: float) -> str:
    return "n/a" if size is None else f"{size / MB:.2f}" + mark(size <= limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="interleaved rounds: init and first invocation (default 20)")
    parser.add_argument("--warm", type=int, default=1000, help="warm invocations per --warm-functions binary (default 1000)")
    parser.add_argument("--warm-functions", default=",".join(WARM_DEFAULT), help="comma-separated binaries to run warm")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".local/bench", help="function output")
    parser.add_argument("--bin-dir", type=Path, help="binaries to measure (default: the workspace's target/release)")
    args = parser.parse_args()
    if args.runs < 1 or args.warm < 1:
        parser.error("--runs and --warm must be at least 1")

    moto = os.environ.get("AWS_ENDPOINT_URL")
    if not moto:
        raise SystemExit("AWS_ENDPOINT_URL is not set: run this through scripts/bench")
    release, functions = workspace_binaries()
    bin_dir = args.bin_dir or release
    binaries = [BARE] + functions
    paths = {b: bin_dir / b for b in binaries}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit("missing release binaries (build without --no-build):\n  " + "\n  ".join(missing))
    warm_functions = [b for b in args.warm_functions.split(",") if b]
    unknown = [b for b in warm_functions if b not in paths]
    if unknown:
        raise SystemExit(f"unknown --warm-functions: {', '.join(unknown)}")
    args.log_dir.mkdir(parents=True, exist_ok=True)
    arm64 = arm64_sizes()

    proxy = AwsProxy(moto)
    measured = {b: Measured() for b in binaries}
    log(f"{args.runs} rounds of {len(binaries)} binaries: init and first invocation, against moto through a counting proxy")
    with open(args.log_dir / "first-invocations.log", "wb") as out:
        for binary in binaries:  # one untimed round first: page cache, moto's own warm-up
            set_up_moto(moto)
            first_invocation(paths[binary], binary, proxy, out.fileno(), Measured())
        for _ in range(args.runs):
            set_up_moto(moto)
            for binary in binaries:
                first_invocation(paths[binary], binary, proxy, out.fileno(), measured[binary])

    warm_results = {}
    for binary in [BARE] + warm_functions:
        log(f"{args.warm} warm invocations of {binary}")
        set_up_moto(moto)
        with open(args.log_dir / "warm.log", "ab") as out:
            for setup in FLOW[: FLOW.index(binary)] if binary in FLOW else []:
                first_invocation(paths[setup], setup, proxy, out.fileno(), Measured())  # the state its event expects
            warm_results[binary] = warm(paths[binary], binary, proxy, out.fileno(), args.warm)
    proxy.close()

    bare = measured[BARE]
    bare_total = statistics.median([i + f for i, f in zip(bare.init_ms, bare.first_own_ms)])
    rows = [
        [
            "binary",
            "x86_64 (MB)",
            "arm64 (MB)",
            "init (ms)",
            "init + 1st own (ms)",
            "x bare",
            "1st AWS (ms)",
            "peak RSS (MiB)",
            "1st invocation",
            "AWS calls of the 1st invocation",
        ]
    ]
    for binary in binaries:
        m = measured[binary]
        total = statistics.median([i + f for i, f in zip(m.init_ms, m.first_own_ms)])
        ratio = total / bare_total
        rows.append(
            [
                binary + (" (baseline)" if binary == BARE else ""),
                size_cell(paths[binary].stat().st_size, X86_64_MAX_BYTES),
                size_cell(arm64.get(binary), ARM64_MAX_BYTES) if binary != BARE else "",
                f"{statistics.median(m.init_ms):.2f}",
                f"{total:.2f}",
                f"{ratio:.2f}" + mark(ratio <= INIT_FIRST_RATIO_MAX),
                f"{statistics.median(m.first_aws_ms):.1f}",
                (f"{m.hwm / MIB:.1f}" + mark(m.hwm < RSS_MAX_BYTES)) if m.hwm else "n/a",
                m.outcome + ("" if m.ok else " !"),
                calls_text(m.calls or []),
            ]
        )
    warm_rows = [["binary", "own median (ms)", "own p99 (ms)", "CPU / invocation (ms)", "peak RSS (MiB)", "AWS calls / invocation", "outcomes"]]
    for binary, w in warm_results.items():
        warm_rows.append(
            [
                binary + (" (baseline)" if binary == BARE else ""),
                f"{w['median']:.3f}",
                f"{w['p99']:.3f}",
                f"{w['cpu_ms']:.3f}",
                f"{w['hwm'] / MIB:.1f}" if w["hwm"] else "n/a",
                f"{w['calls']:.1f}",
                w["outcomes"],
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
        f"{rustc}; {args.runs} interleaved rounds, medians"
    )
    print()
    print(render(rows, right={1, 2, 3, 4, 5, 6, 7}))
    print()
    print(
        f"Targets (not asserted; ! marks a miss): init + 1st own <= {INIT_FIRST_RATIO_MAX}x bare ({bare_total:.2f} ms) | "
        f"x86_64 <= {X86_64_MAX_BYTES / MB} MB | arm64 <= {ARM64_MAX_BYTES / MB:.0f} MB | peak RSS < {RSS_MAX_BYTES // MIB} MiB."
    )
    print(
        "init = spawn to the first GET /next. 1st own = event sent to answer received, minus the time the proxy spent on "
        "the invocation's AWS calls (1st AWS: moto's time, not the function's). MB = 10^6 bytes; arm64 = "
        "infra/.aws-sam/build (scripts/build), n/a without it."
    )
    print()
    print(render(warm_rows, right={1, 2, 3, 4, 5}))
    print()
    print(
        f"{args.warm} warm invocations of the same event in one process, after its first; own time as above; "
        f"CPU = utime + stime over the {args.warm}, per invocation. Function output: {args.log_dir}."
    )
    for binary in binaries:
        if not measured[binary].ok:
            print(f"invocation problem: {binary}: {measured[binary].outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
