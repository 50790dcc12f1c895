#!/usr/bin/env bash
# Usage: scripts/up.sh [N_WORKERS]   (make up)
# Start the service set-up on $BIND_HOST (default 127.0.0.1): a Spark standalone master and N workers
# (default 2), an MLflow tracking server, and Airflow (API server/UI, scheduler, DAG processor,
# triggerer) wired to both: the connection spark_default points at the master (client deploy mode)
# and tasks log to the tracking server as its admin (MLFLOW_TRACKING_USERNAME/PASSWORD, see
# scripts/mlflow-server.sh; the password is generated on first start when unset).
# Trigger `music_recs_nightly` in the UI; stop with scripts/down.sh. The wiring is kept in
# $PIPELINE_HOME/services/services.env, so `scripts/airflow.sh start` alone (after a crash) restarts
# Airflow's processes wired the same way.
# Ports: Spark master 7077 (UI 8081, workers 8082+), MLflow 5000, Airflow 8088 (see each script's env).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/_common.sh"
trap 'echo "up.sh failed: what started is still running; scripts/down.sh stops it" >&2' ERR
"$here/spark-cluster.sh" start "${1:-2}"
"$here/mlflow-server.sh" start
# the server's admin credentials for Airflow's processes, which hand them to the tasks and the
# spark-submit'ed ALS jobs (MLflow's client reads MLFLOW_TRACKING_USERNAME/PASSWORD)
uri="${MLFLOW_TRACKING_URI:-}"
mlflow_env="$("$here/mlflow-server.sh" env)"
eval "$mlflow_env"
export MLFLOW_TRACKING_URI="${uri:-$MLFLOW_TRACKING_URI}"
export MLFLOW_UI_URL="${MLFLOW_UI_URL:-$MLFLOW_TRACKING_URI}"
master="spark://${SPARK_MASTER_HOST:-$CONNECT_HOST}:${SPARK_MASTER_PORT:-7077}"
export SPARK_MASTER="$master"   # the data stages' in-task Spark sessions
export AIRFLOW_CONN_SPARK_DEFAULT="{\"conn_type\": \"spark\", \"host\": \"$master\", \"extra\": {\"deploy-mode\": \"client\"}}"
# the wiring, for `scripts/airflow.sh start` on its own later (a scheduler restarted after a crash must not
# fall back to local Spark and the embedded MLflow store); no secret in it: the password stays where it was
mkdir -p "$STATE"
{
  echo "# written by scripts/up.sh: how Airflow's processes reach the services; read by scripts/airflow.sh"
  for var in MLFLOW_TRACKING_URI MLFLOW_UI_URL MLFLOW_TRACKING_USERNAME SPARK_MASTER AIRFLOW_CONN_SPARK_DEFAULT; do
    printf 'export %s=%q\n' "$var" "${!var}"
  done
  grep '^export MLFLOW_TRACKING_PASSWORD=' <<<"$mlflow_env" || true
} >"$STATE/services.env"
"$here/airflow.sh" start
