#!/usr/bin/env bash
# Usage: scripts/down.sh   (make down)
# Stop what scripts/up.sh started (Airflow, the MLflow server, the Spark workers and master), even if
# one of them is already gone. Same env as up.sh (ports, PIPELINE_HOME) to find the pid files.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
status=0
"$here/airflow.sh" stop || status=1
"$here/mlflow-server.sh" stop || status=1
"$here/spark-cluster.sh" stop || status=1
rm -f "${PIPELINE_HOME:-$here/../var}/services/services.env"
exit "$status"
