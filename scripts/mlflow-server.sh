#!/usr/bin/env bash
# Usage: scripts/mlflow-server.sh start | stop | status | run
#   start   an MLflow tracking server in the background on $BIND_HOST:$MLFLOW_PORT, returning once /health answers
#   stop    stop it;  status: ask its /health;  run: the server in the foreground (the docker/ mlflow service)
# It is the one writer when mapped sweep tasks log concurrently; it serves artifacts (--serve-artifacts),
# so clients need no access to the artifact folder. Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
# Env: BIND_HOST (127.0.0.1), MLFLOW_PORT (5000), MLFLOW_WORKERS (2),
#      MLFLOW_BACKEND_STORE_URI (default sqlite:///$PIPELINE_HOME/mlflow-server/mlflow.db; a postgresql:// URI for Postgres),
#      MLFLOW_ARTIFACTS_DESTINATION (default $PIPELINE_HOME/mlflow-server/artifacts),
#      MLFLOW_ALLOWED_HOSTS (Host headers accepted beyond localhost, e.g. "mlflow:5000" inside compose).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${MLFLOW_PORT:-5000}"
DIR="$PIPELINE_HOME/mlflow-server"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$DIR/mlflow.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-$DIR/artifacts}"
NAME="mlflow-$PORT"
URL="http://$CONNECT_HOST:$PORT"

case "${1:-status}" in
  run)
    need mlflow
    mkdir -p "$DIR"
    [[ "$ARTIFACTS" == *://* ]] || mkdir -p "$ARTIFACTS"
    extra=()
    [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]] && extra=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
    exec mlflow server --host "$BIND_HOST" --port "$PORT" --workers "${MLFLOW_WORKERS:-2}" \
      --backend-store-uri "$BACKEND" --serve-artifacts --artifacts-destination "$ARTIFACTS" \
      --default-artifact-root mlflow-artifacts:/ "${extra[@]}"
    ;;
  start)
    start_bg "$NAME" "$0" run
    wait_http "$NAME" "$URL/health" 120
    echo "MLflow tracking server at $URL (backend ${BACKEND%%://*}, artifacts $ARTIFACTS)"
    echo "  export MLFLOW_TRACKING_URI=$URL"
    ;;
  stop) stop_bg "$NAME" ;;
  status)
    if http_ok "$URL/health"; then echo "MLflow up at $URL"; else echo "no MLflow server answers at $URL/health" >&2; exit 1; fi
    ;;
  -h|--help|help) usage ;;
  *) echo "usage: $0 start | stop | status | run" >&2; exit 2 ;;
esac
