# Sourced by the service scripts: paths, the venv's binaries, pid files and waiting.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIPELINE_HOME="${PIPELINE_HOME:-$REPO/var}"
BIND_HOST="${BIND_HOST:-127.0.0.1}"
STATE="$PIPELINE_HOME/services"
mkdir -p "$STATE"
if [[ -x "$REPO/.venv/bin/python" ]]; then export PATH="$REPO/.venv/bin:$PATH"; fi

# start NAME CMD...: run CMD in the background, its pid in $STATE/NAME.pid, its log in $STATE/NAME.log
start_bg() {
  local name=$1; shift
  if is_running "$name"; then echo "$name already running (pid $(cat "$STATE/$name.pid"))"; return 0; fi
  nohup "$@" >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  echo "started $name (pid $!, log $STATE/$name.log)"
}

is_running() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

stop_bg() {
  local name=$1
  if is_running "$name"; then
    local pid; pid=$(cat "$STATE/$name.pid")
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $name"
  fi
  rm -f "$STATE/$name.pid"
}

# wait_http URL SECONDS: until URL answers 200
wait_http() {
  local url=$1 secs=${2:-60}
  for _ in $(seq 1 $((secs * 2))); do
    if python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "timed out waiting for $url" >&2; return 1
}
