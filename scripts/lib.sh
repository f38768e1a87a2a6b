# Shared by scripts/run and scripts/test: the project-local virtualenv and moto.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STATE="$ROOT/.local"

# Creates .venv and installs scripts/requirements.txt, again only when that file changes.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256"
  local wanted
  wanted="$(sha256sum "$ROOT/scripts/requirements.txt" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
    return
  fi
  echo "==> installing Python tools into .venv (scripts/requirements.txt)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"
  echo "$wanted" > "$stamp"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts moto on 127.0.0.1:$1 (a free port if empty) and points the AWS SDK at it.
start_moto() {
  local port="${1:-}"
  [ -n "$port" ] || port="$(free_port)"
  mkdir -p "$STATE"
  "$VENV/bin/python" "$ROOT/scripts/moto_server.py" --host 127.0.0.1 --port "$port" > "$STATE/moto.log" 2>&1 &
  MOTO_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  for _ in $(seq 1 100); do
    if curl -fsS "$AWS_ENDPOINT_URL/_mailconfirm/outbox" > /dev/null 2>&1; then
      echo "==> moto listening on $AWS_ENDPOINT_URL (log: .local/moto.log)"
      return
    fi
    if ! kill -0 "$MOTO_PID" 2> /dev/null; then
      echo "moto did not start:" >&2
      cat "$STATE/moto.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "moto did not answer within 20 s; see .local/moto.log" >&2
  exit 1
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2> /dev/null || true
    wait "$MOTO_PID" 2> /dev/null || true
  fi
}

# Debian's chromium, which playwright-core drives in the browser test (Playwright's own
# browser download does not work here), and the CJK fonts the Japanese and Chinese pages need
# to show as text rather than boxes in its screenshots.
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/opentype/noto ]; then
    return
  fi
  mkdir -p "$STATE"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends chromium fonts-noto-cjk > "$STATE/apt.log" 2>&1 \
    || { $sudo apt-get update > "$STATE/apt.log" 2>&1 && $sudo apt-get install -y --no-install-recommends chromium fonts-noto-cjk >> "$STATE/apt.log" 2>&1; } \
    || { echo "could not install chromium; see .local/apt.log" >&2; exit 1; }
}

# Builds local-api and serves it on 127.0.0.1:$1 (a free port if empty) against moto, with
# the remaining arguments as its environment (NAME=value ...); waits until it answers.
start_local_api() {
  local port="${1:-}"
  shift || true
  [ -n "$port" ] || port="$(free_port)"
  mkdir -p "$STATE"
  (cd "$ROOT" && cargo build --quiet --bin local-api) || { echo "could not build local-api" >&2; exit 1; }
  env "$@" LOCAL_API_ADDRESS="127.0.0.1:$port" "$ROOT/target/debug/local-api" > "$STATE/local-api.log" 2>&1 &
  LOCAL_API_PID=$!
  LOCAL_API_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 150); do
    if curl -fsS "$LOCAL_API_URL/_local/openapi.json" > /dev/null 2>&1; then
      echo "==> local API on $LOCAL_API_URL (log: .local/local-api.log)"
      return
    fi
    if ! kill -0 "$LOCAL_API_PID" 2> /dev/null; then
      echo "the local API did not start:" >&2
      cat "$STATE/local-api.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "the local API did not answer within 30 s; see .local/local-api.log" >&2
  exit 1
}

stop_local_api() {
  if [ -n "${LOCAL_API_PID:-}" ]; then
    kill "$LOCAL_API_PID" 2> /dev/null || true
    wait "$LOCAL_API_PID" 2> /dev/null || true
    LOCAL_API_PID=""
  fi
}

# Runs schemathesis against the local API's /_local/openapi.json: seeded and bounded, once
# with a valid access token and once without, checking no 5xx and conformance to the document.
run_schemathesis() {
  local examples="${SCHEMATHESIS_MAX_EXAMPLES:-30}" seed="${SCHEMATHESIS_SEED:-20261201}"
  echo "==> schemathesis against infra/openapi.json (seed $seed, at most $examples examples per operation)"
  # The throttles are tested elsewhere; raised here so requests reach the handlers' logic.
  start_local_api "" TABLE_NAME="schemathesis-$$" RESEND_IP_LIMIT=5 RESEND_IDENTITY_LIMIT=5 \
    MASTODON_IP_LIMIT=5 MASTODON_USER_LIMIT=5 RESEND_IP_WINDOW_SECONDS=1 RESEND_IDENTITY_WINDOW_SECONDS=1 \
    MASTODON_IP_WINDOW_SECONDS=1 MASTODON_USER_WINDOW_SECONDS=1
  local user="schemathesis-$$"
  curl -fsS -X POST "$LOCAL_API_URL/_local/signup" \
    -d "{\"user_id\":\"$user\",\"email\":\"$user@example.com\",\"client_id\":\"schemathesis\"}" > /dev/null || return 1
  # The user's own token, also with the admin role (Backendless) and the 10npay service scope.
  local token
  token="$(curl -fsS -X POST "$LOCAL_API_URL/_local/token" \
    -d "{\"sub\":\"$user\",\"client_id\":\"schemathesis\",\"scope\":\"write mailconfirm:send-confirmation\",\"roles\":[\"mailconfirm-admin\"]}" \
    | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')" || return 1
  local checks=not_a_server_error,status_code_conformance,content_type_conformance
  checks="$checks,response_headers_conformance,response_schema_conformance"
  local status=0 started=$SECONDS summary=""
  mkdir -p "$STATE/schemathesis"
  for run in authenticated unauthenticated; do
    # Without a token of ours, schemathesis makes up the security parameters itself.
    local auth=(--generation-with-security-parameters true)
    [ "$run" = unauthenticated ] || auth=(-H "Authorization: Bearer $token" --generation-with-security-parameters false)
    local run_status=0
    # In a fresh directory each time: schemathesis and hypothesis keep caches in the current one,
    # and a run should not depend on the ones before it.
    rm -rf "$STATE/schemathesis/$run"
    mkdir -p "$STATE/schemathesis/$run"
    (cd "$STATE/schemathesis/$run" && "$VENV/bin/schemathesis" --no-color run "$LOCAL_API_URL/_local/openapi.json" --url "$LOCAL_API_URL" \
      "${auth[@]}" --checks "$checks" --max-examples "$examples" --seed "$seed" \
      --phases examples,coverage,fuzzing --generation-database none --request-timeout 30 --max-redirects 0 --workers 1 \
      --report junit --report-dir "$STATE/schemathesis/$run" > "$STATE/schemathesis/$run.log" 2>&1) || run_status=$?
    summary="$summary  $run: $(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?)|test cases|[0-9]+ generated' "$STATE/schemathesis/$run.log" | tail -2 | tr -s ' =' ' ' | paste -sd';' -) (exit $run_status)\n"
    if [ "$run_status" != 0 ]; then
      status=$run_status
      tail -n 80 "$STATE/schemathesis/$run.log" >&2
    fi
  done
  stop_local_api
  echo "==> schemathesis done in $((SECONDS - started)) s (logs: .local/schemathesis/):"
  printf "%b" "$summary"
  return "$status"
}
