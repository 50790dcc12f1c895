#!/usr/bin/env bash
# Usage: scripts/spark-cluster.sh start [N_WORKERS] | stop | status | master | worker [MASTER_URL]
#   start    a Spark standalone master and N workers (default 1) in the background on $BIND_HOST,
#            returning once the master answers and every worker has registered with it
#   stop     stop the workers, then the master (the ones started with these ports)
#   status   the master's JSON status page (http://$BIND_HOST:$SPARK_MASTER_WEBUI_PORT/json/), summarized
#   master   run the master in the foreground (the spark-master service of docker/compose.yaml)
#   worker   run one worker in the foreground (MASTER_URL default $SPARK_MASTER_URL or this master)
# pip's pyspark ships bin/spark-class but not sbin/start-master.sh, so the daemons are started
# with `spark-class org.apache.spark.deploy.master.Master` / `...deploy.worker.Worker`.
# Env: BIND_HOST (127.0.0.1), SPARK_MASTER_HOST (the name the master advertises; default $BIND_HOST),
#      SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8081: Airflow keeps 8088),
#      SPARK_WORKER_WEBUI_PORT (8082, +1 per further worker), SPARK_WORKER_CORES (all cores),
#      SPARK_WORKER_MEMORY (2g), PIPELINE_HOME (state under $PIPELINE_HOME/services).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${SPARK_MASTER_PORT:-7077}"
UI="${SPARK_MASTER_WEBUI_PORT:-8081}"
WUI="${SPARK_WORKER_WEBUI_PORT:-8082}"
MEMORY="${SPARK_WORKER_MEMORY:-2g}"
JSON_URL="http://$CONNECT_HOST:$UI/json/"
# Daemons, their UIs and their block managers bind loopback unless BIND_HOST says otherwise.
if [[ "$BIND_HOST" != "0.0.0.0" ]]; then export SPARK_LOCAL_IP="$BIND_HOST"; fi

master_host() {
  if [[ -n "${SPARK_MASTER_HOST:-}" ]]; then echo "$SPARK_MASTER_HOST"
  elif [[ "$BIND_HOST" == "0.0.0.0" ]]; then hostname
  else echo "$BIND_HOST"; fi
}

run_master() {
  need spark-class
  exec spark-class org.apache.spark.deploy.master.Master \
    --host "$(master_host)" --port "$PORT" --webui-port "$UI"
}

# run_worker MASTER_URL WEBUI_PORT WORK_DIR
run_worker() {
  need spark-class
  local host_args=()
  [[ "$BIND_HOST" != "0.0.0.0" ]] && host_args=(--host "$BIND_HOST")
  mkdir -p "$3"
  exec spark-class org.apache.spark.deploy.worker.Worker "${host_args[@]}" --webui-port "$2" \
    ${SPARK_WORKER_CORES:+--cores "$SPARK_WORKER_CORES"} --memory "$MEMORY" --work-dir "$3" "$1"
}

print_status() {
  "$PY" - "$JSON_URL" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        d = json.load(r)
except OSError as exc:
    sys.exit(f"no Spark master answers at {sys.argv[1]} ({exc}): start one with scripts/spark-cluster.sh start")
print(f"master {d['url']} {d['status']}: {d['aliveworkers']} alive worker(s), {d['cores']} cores, "
      f"{len(d['activeapps'])} active / {len(d['completedapps'])} completed application(s)")
for w in d["workers"]:
    print(f"  worker {w['id']} {w['state']} cores {w['coresused']}/{w['cores']} {w['webuiaddress']}")
for a in d["activeapps"] + d["completedapps"]:
    print(f"  app {a['id']} {a['name']!r} {a['state']}")
EOF
}

case "${1:-status}" in
  start)
    n=${2:-1}
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N_WORKERS must be a positive integer, got '$n'"
    start_bg "spark-master-$PORT" "$0" master
    wait_http "spark-master-$PORT" "$JSON_URL" 90
    master_url="spark://$(master_host):$PORT"
    started=()
    for i in $(seq 1 "$n"); do
      name="spark-worker-$PORT-$i"
      if is_running "$name"; then echo "$name already running"; continue; fi
      start_bg "$name" "$0" worker "$master_url" $((WUI + i - 1)) "$STATE/$name-work"
      started+=("$name")
    done
    for name in "${started[@]}"; do wait_log "$name" "Successfully registered with master" 90; done
    print_status
    ;;
  stop)
    for f in "$STATE"/spark-worker-"$PORT"-*.pid; do [[ -e "$f" ]] && stop_bg "$(basename "$f" .pid)"; done
    stop_bg "spark-master-$PORT"
    ;;
  status) print_status ;;
  master) run_master ;;
  worker)
    # internal form used by `start`: worker MASTER_URL WEBUI_PORT WORK_DIR
    run_worker "${2:-${SPARK_MASTER_URL:-spark://$(master_host):$PORT}}" "${3:-$WUI}" \
      "${4:-${SPARK_WORKER_DIR:-$STATE/spark-worker-$(hostname)-work}}"
    ;;
  -h|--help|help) usage ;;
  *) echo "usage: $0 start [N_WORKERS] | stop | status | master | worker [MASTER_URL]" >&2; exit 2 ;;
esac
