#!/usr/bin/env bash
# Usage: scripts/down.sh — stop everything up.sh started.
set -uo pipefail
here="$(dirname "$0")"
"$here/airflow.sh" stop
"$here/mlflow-server.sh" stop
"$here/spark-cluster.sh" stop
