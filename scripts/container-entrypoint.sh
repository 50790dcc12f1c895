#!/usr/bin/env bash
# Usage (in the docker/ image): container-entrypoint.sh ROLE
# ROLE: spark-master | spark-worker | mlflow | airflow-api-server | airflow-scheduler | airflow-dag-processor
# Runs one service in the foreground, configured from the environment (see .env.example).
set -euo pipefail
role=${1:?usage: $0 ROLE}
export AIRFLOW__CORE__DAGS_FOLDER=/opt/music-recs/dags AIRFLOW__CORE__PLUGINS_FOLDER=/opt/music-recs/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
case "$role" in
  spark-master) exec spark-class org.apache.spark.deploy.master.Master --host 0.0.0.0 --port 7077 --webui-port 8081 ;;
  spark-worker) exec spark-class org.apache.spark.deploy.worker.Worker --webui-port 8082 \
                  --memory "${SPARK_WORKER_MEMORY:-4g}" "${SPARK_MASTER_URL:?}" ;;
  mlflow) exec mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:?}" \
            --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/var/lib/music-recs/artifacts}" ;;
  airflow-api-server) airflow db migrate && exec airflow api-server --host 0.0.0.0 --port 8088 ;;
  airflow-scheduler) exec airflow scheduler ;;
  airflow-dag-processor) exec airflow dag-processor ;;
  *) echo "unknown role $role" >&2; exit 2 ;;
esac
