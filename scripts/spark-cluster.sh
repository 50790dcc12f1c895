#!/usr/bin/env bash
# Usage: scripts/spark-cluster.sh start [N_WORKERS] | stop | status
# A Spark standalone master and N workers on $BIND_HOST (default 127.0.0.1), started with pip's
# pyspark `spark-class` (pip's pyspark has no sbin/start-master.sh).
# Env: SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8081; Airflow keeps 8080/8088),
#      SPARK_WORKER_WEBUI_PORT (8082, +1 per worker), SPARK_WORKER_CORES (all), SPARK_WORKER_MEMORY (4g).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${SPARK_MASTER_PORT:-7077}"
UI="${SPARK_MASTER_WEBUI_PORT:-8081}"
WUI="${SPARK_WORKER_WEBUI_PORT:-8082}"
MASTER="spark://$BIND_HOST:$PORT"
cmd=${1:-status}
n=${2:-1}
case "$cmd" in
  start)
    export SPARK_LOCAL_IP="$BIND_HOST"
    start_bg "spark-master-$PORT" spark-class org.apache.spark.deploy.master.Master \
      --host "$BIND_HOST" --port "$PORT" --webui-port "$UI"
    wait_http "http://$BIND_HOST:$UI/json/" 90
    for i in $(seq 1 "$n"); do
      start_bg "spark-worker-$PORT-$i" spark-class org.apache.spark.deploy.worker.Worker \
        --host "$BIND_HOST" --webui-port $((WUI + i - 1)) \
        ${SPARK_WORKER_CORES:+--cores "$SPARK_WORKER_CORES"} --memory "${SPARK_WORKER_MEMORY:-4g}" "$MASTER"
    done
    for _ in $(seq 1 120); do
      alive=$(python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))['aliveworkers'])" \
        "http://$BIND_HOST:$UI/json/" 2>/dev/null || echo 0)
      [[ "$alive" -ge "$n" ]] && break
      sleep 0.5
    done
    echo "master $MASTER (UI http://$BIND_HOST:$UI), $alive worker(s) alive"
    ;;
  stop)
    for f in "$STATE"/spark-worker-"$PORT"-*.pid; do [[ -e "$f" ]] && stop_bg "$(basename "$f" .pid)"; done
    stop_bg "spark-master-$PORT"
    ;;
  status)
    python3 -c "import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1])); print(json.dumps({k: d[k] for k in ('url','status','aliveworkers','cores','activeapps','completedapps') if k in d}, default=str, indent=1))" \
      "http://$BIND_HOST:$UI/json/"
    ;;
  *) echo "usage: $0 start [N_WORKERS] | stop | status" >&2; exit 2 ;;
esac
