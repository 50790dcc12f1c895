#!/usr/bin/env bash
# Usage: scripts/up.sh [N_WORKERS]   — Spark master + workers, MLflow server, Airflow, all on 127.0.0.1.
# Then trigger `music_recs_nightly` in the UI; its Spark jobs go to spark://127.0.0.1:7077 and its runs to MLflow.
set -euo pipefail
here="$(dirname "$0")"
"$here/spark-cluster.sh" start "${1:-2}"
"$here/mlflow-server.sh" start
export MLFLOW_TRACKING_URI="http://127.0.0.1:${MLFLOW_PORT:-5000}"
export SPARK_MASTER="spark://127.0.0.1:${SPARK_MASTER_PORT:-7077}"
export AIRFLOW_CONN_SPARK_DEFAULT="{\"conn_type\": \"spark\", \"host\": \"$SPARK_MASTER\", \"extra\": {\"deploy-mode\": \"client\"}}"
"$here/airflow.sh" start
