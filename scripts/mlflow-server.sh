#!/usr/bin/env bash
# Usage: scripts/mlflow-server.sh start | stop | status
# An MLflow tracking server (the single writer for concurrent sweep tasks) on $BIND_HOST:$MLFLOW_PORT.
# Env: MLFLOW_PORT (5000), MLFLOW_BACKEND_STORE_URI (default sqlite under $PIPELINE_HOME/mlflow-server;
#      give a postgresql:// URI for Postgres), MLFLOW_ARTIFACTS_DESTINATION (default $PIPELINE_HOME/mlflow-server/artifacts).
# Then point the pipeline at it: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${MLFLOW_PORT:-5000}"
DIR="$PIPELINE_HOME/mlflow-server"
mkdir -p "$DIR"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$DIR/mlflow.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-$DIR/artifacts}"
case "${1:-status}" in
  start)
    start_bg "mlflow-$PORT" mlflow server --host "$BIND_HOST" --port "$PORT" --workers "${MLFLOW_WORKERS:-2}" \
      --backend-store-uri "$BACKEND" --serve-artifacts --artifacts-destination "$ARTIFACTS"
    wait_http "http://$BIND_HOST:$PORT/health" 120
    echo "MLflow at http://$BIND_HOST:$PORT (backend ${BACKEND%%://*}://...)"
    ;;
  stop) stop_bg "mlflow-$PORT" ;;
  status) wait_http "http://$BIND_HOST:$PORT/health" 2 && echo "MLflow up at http://$BIND_HOST:$PORT" ;;
  *) echo "usage: $0 start | stop | status" >&2; exit 2 ;;
esac
