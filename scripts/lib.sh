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
# browser download does not work here).
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then
    return
  fi
  mkdir -p "$STATE"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends chromium > "$STATE/apt.log" 2>&1 \
    || { $sudo apt-get update > "$STATE/apt.log" 2>&1 && $sudo apt-get install -y --no-install-recommends chromium >> "$STATE/apt.log" 2>&1; } \
    || { echo "could not install chromium; see .local/apt.log" >&2; exit 1; }
}
