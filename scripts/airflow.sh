#!/usr/bin/env bash
# Usage: scripts/airflow.sh start | stop | status
# Airflow 3 (API server + UI, scheduler, DAG processor, triggerer) with AIRFLOW_HOME=$PIPELINE_HOME/airflow,
# this repository's dags/ and plugins/, on $BIND_HOST:$AIRFLOW_PORT (default 8088: Spark's UIs use 8080+).
# Auth stays on (the simple auth manager): the admin password is written to
# $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated on first start.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${AIRFLOW_PORT:-8088}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PIPELINE_HOME/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST="$BIND_HOST"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://$BIND_HOST:$PORT/execution/"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW_ADMIN_USER:-admin}:admin"
if [[ -z "${AIRFLOW_CONN_SPARK_DEFAULT:-}" ]]; then
  export AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[*]"}'
fi
case "${1:-status}" in
  start)
    mkdir -p "$AIRFLOW_HOME"
    airflow db migrate >"$STATE/airflow-db-migrate.log" 2>&1
    start_bg airflow-api-server airflow api-server --host "$BIND_HOST" --port "$PORT"
    # --skip-serve-logs: the log server binds every interface; on one machine the UI reads the log files itself
    start_bg airflow-scheduler airflow scheduler --skip-serve-logs
    start_bg airflow-dag-processor airflow dag-processor
    start_bg airflow-triggerer airflow triggerer --skip-serve-logs
    wait_http "http://$BIND_HOST:$PORT/api/v2/monitor/health" 180
    echo "Airflow UI at http://$BIND_HOST:$PORT (user ${AIRFLOW_ADMIN_USER:-admin}; password in" \
      "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
    ;;
  stop) for s in airflow-triggerer airflow-dag-processor airflow-scheduler airflow-api-server; do stop_bg "$s"; done ;;
  status) wait_http "http://$BIND_HOST:$PORT/api/v2/monitor/health" 2 && echo "Airflow up at http://$BIND_HOST:$PORT" ;;
  *) echo "usage: $0 start | stop | status" >&2; exit 2 ;;
esac
