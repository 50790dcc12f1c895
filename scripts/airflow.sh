#!/usr/bin/env bash
# Usage: scripts/airflow.sh start | stop | status | migrate | run COMPONENT
#   start    `airflow standalone` in parts, in the background: migrate the metadata database, then the
#            API server (UI) on $BIND_HOST:$AIRFLOW_PORT, scheduler, DAG processor and triggerer, each
#            restarted when it exits with an error (as compose's `restart: unless-stopped` does);
#            returns once the API server's health endpoint answers
#   stop     stop the four;  status: ask the health endpoint;  migrate: `airflow db migrate` only
#   run COMPONENT   one of api-server | scheduler | dag-processor | triggerer in the foreground
#                   (the docker/ services; run `migrate` once before them)
# AIRFLOW_HOME=$PIPELINE_HOME/airflow, dags = <repo>/dags, plugins = <repo>/plugins, no example DAGs.
# Port 8088 by default: Spark's UIs use 8080 and up. Auth stays on (Airflow 3's simple auth manager):
# the admin's generated password is in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated.
# Env: BIND_HOST (127.0.0.1), AIRFLOW_PORT (8088), AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS (admin:admin,
#      i.e. user admin with role admin), AIRFLOW_CONN_SPARK_DEFAULT (default local[*]), any AIRFLOW__* setting.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
# started by scripts/up.sh before: the same wiring (MLflow server, Spark master), unless the environment says otherwise
if [[ -f "$STATE/services.env" ]]; then
  while IFS= read -r line; do
    [[ "$line" == export\ * ]] || continue
    var="${line#export }"; var="${var%%=*}"
    [[ -z "${!var:-}" ]] && eval "$line"
  done <"$STATE/services.env"
fi
PORT="${AIRFLOW_PORT:-8088}"
URL="http://$CONNECT_HOST:$PORT"
# the embedded set-up (AIRFLOW_HOME, DAG and plugin folders, spark_default): src/pipeline/airflow_env.py
exports="$("$PY" -m pipeline.airflow_env --repo "$REPO" exports)" || die "cannot read the Airflow set-up: run 'make install'"
eval "$exports"
export AIRFLOW__API__HOST="$BIND_HOST"
export AIRFLOW__API__PORT="$PORT"
# Task processes report to the API server's execution API: on this machine, or where the env says (compose).
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-$URL/execution/}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
PASSWORDS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated}"
COMPONENTS=(api-server scheduler dag-processor triggerer)

# a minimal airflow.cfg before Airflow writes its default one, which pins this checkout's absolute paths
airflow_home() { "$PY" -m pipeline.airflow_env --repo "$REPO" prepare; }

run_component() {
  need airflow
  airflow_home
  case "$1" in
    api-server) exec airflow api-server --host "$BIND_HOST" --port "$PORT" ;;
    # --skip-serve-logs: the log server would listen on every interface; the API server reads
    # the task log files itself (same machine, or the shared volume in docker/compose.yaml)
    scheduler) exec airflow scheduler --skip-serve-logs ;;
    triggerer) exec airflow triggerer --skip-serve-logs ;;
    dag-processor) exec airflow dag-processor ;;
    *) die "unknown component '$1': one of ${COMPONENTS[*]}" ;;
  esac
}

# keep COMPONENT: run it, and start it again 10 s after it exits with an error (Airflow's scheduler exits
# on an unexpected database error, e.g. SQLite's StaleDataError under a backfill); give up after five
# exits each within a minute of starting, which is a configuration to fix, not a fault to ride out
keep() {
  local quick=0 started rc
  while true; do
    started=$SECONDS
    "$0" run "$1" && return 0
    rc=$?
    if (( SECONDS - started < 60 )); then quick=$((quick + 1)); else quick=0; fi
    if (( quick >= 5 )); then
      echo "error: airflow $1 exited with status $rc five times within a minute of starting: not restarting it" >&2
      return "$rc"
    fi
    echo "airflow $1 exited with status $rc: starting it again in 10 s (scripts/airflow.sh keep $1)" >&2
    sleep 10
  done
}

migrate() {
  need airflow
  airflow_home
  mkdir -p "$STATE"
  airflow db migrate >"$STATE/airflow-db-migrate.log" 2>&1 \
    || { tail -n 30 "$STATE/airflow-db-migrate.log" >&2; die "airflow db migrate failed (log $STATE/airflow-db-migrate.log)"; }
}

case "${1:-status}" in
  start)
    migrate
    for c in "${COMPONENTS[@]}"; do start_bg "airflow-$c" "$0" keep "$c"; done
    wait_http airflow-api-server "$URL/api/v2/monitor/health" 180
    echo "Airflow UI at $URL: user ${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS%%:*}, password in $PASSWORDS"
    ;;
  stop)  # all four at once: each may take seconds to shut down gracefully
    for c in "${COMPONENTS[@]}"; do stop_bg "airflow-$c" & done
    wait
    ;;
  status)
    if http_ok "$URL/api/v2/monitor/health"; then
      "$PY" -c "import json,sys,urllib.request; print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1], timeout=5)), indent=1))" \
        "$URL/api/v2/monitor/health"
    else echo "no Airflow API server answers at $URL" >&2; exit 1; fi
    ;;
  migrate) migrate; echo "metadata database migrated ($AIRFLOW_HOME)" ;;
  run) run_component "${2:?usage: $0 run api-server|scheduler|dag-processor|triggerer}" ;;
  keep) keep "${2:?usage: $0 keep api-server|scheduler|dag-processor|triggerer}" ;;
  -h|--help|help) usage ;;
  *) echo "usage: $0 start | stop | status | migrate | run COMPONENT" >&2; exit 2 ;;
esac
