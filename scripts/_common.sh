# Sourced by the service scripts (not run): paths, the venv's binaries, pid files, waiting.
# Every service binds $BIND_HOST (default 127.0.0.1); clients on this machine reach it at $CONNECT_HOST.
# State (pid and log files) lives under ${PIPELINE_HOME:-<repo>/var}/services/.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIPELINE_HOME="${PIPELINE_HOME:-$REPO/var}"
BIND_HOST="${BIND_HOST:-127.0.0.1}"
if [[ "$BIND_HOST" == "0.0.0.0" ]]; then CONNECT_HOST=127.0.0.1; else CONNECT_HOST="$BIND_HOST"; fi
STATE="$PIPELINE_HOME/services"  # created on first start
# The repository's virtualenv first, so `spark-class`, `mlflow` and `airflow` are its pinned versions.
if [[ -x "$REPO/.venv/bin/python" ]]; then export PATH="$REPO/.venv/bin:$PATH"; fi
PY="$(command -v python || command -v python3)"

# die MESSAGE: print to stderr and exit 1
die() { echo "error: $*" >&2; exit 1; }

# need CMD: fail with the fix when a command is missing
need() { command -v "$1" >/dev/null || die "'$1' is not on PATH: run 'make install' (the .venv holds it) or activate your venv"; }

is_running() {
  [[ -f "$STATE/$1.pid" ]] || return 1
  local pid; pid=$(cat "$STATE/$1.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  # a process killed but not yet reaped (a zombie) is not running
  [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]]
}

# start_bg NAME CMD...: run CMD in its own session in the background; pid in $STATE/NAME.pid, log in $STATE/NAME.log
start_bg() {
  local name=$1; shift
  if is_running "$name"; then echo "$name already running (pid $(cat "$STATE/$name.pid"))"; return 0; fi
  mkdir -p "$STATE"
  setsid nohup "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
  echo "started $name (pid $!, log $STATE/$name.log)"
}

# stop_bg NAME: TERM the process group NAME started, KILL it after 20 s (the triggerer takes 10), remove the pid file
stop_bg() {
  local name=$1 pid
  if is_running "$name"; then
    pid=$(cat "$STATE/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped $name"
  fi
  rm -f "$STATE/$name.pid"
}

# fail_with_log NAME MESSAGE: exit 1 showing the end of NAME's log
fail_with_log() {
  echo "error: $2 (last lines of $STATE/$1.log follow)" >&2
  tail -n 30 "$STATE/$1.log" >&2 || true
  exit 1
}

http_ok() { "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }

# wait_http NAME URL SECONDS: until URL answers 2xx; fails early (with the log) if NAME's process died
wait_http() {
  local name=$1 url=$2 secs=${3:-60}
  for _ in $(seq 1 $((secs * 2))); do
    http_ok "$url" && return 0
    is_running "$name" || fail_with_log "$name" "$name exited before $url answered"
    sleep 0.5
  done
  fail_with_log "$name" "timed out after ${secs}s waiting for $url"
}

# wait_log NAME PATTERN SECONDS: until NAME's log has a line matching PATTERN (grep -E)
wait_log() {
  local name=$1 pattern=$2 secs=${3:-60}
  for _ in $(seq 1 $((secs * 2))); do
    grep -qE "$pattern" "$STATE/$name.log" 2>/dev/null && return 0
    is_running "$name" || fail_with_log "$name" "$name exited before logging '$pattern'"
    sleep 0.5
  done
  fail_with_log "$name" "timed out after ${secs}s waiting for '$pattern' in the log"
}

# usage: print the calling script's header comment (its usage) without the '# '
usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }
