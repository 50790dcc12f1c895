#!/usr/bin/env bash
# Usage: scripts/mlflow-server.sh start | stop | status | run | env
#   start   an MLflow tracking server in the background on $BIND_HOST:$MLFLOW_PORT, returning once /health answers
#           and the admin's credentials are accepted
#   stop    stop it;  status: ask its /health;  run: the server in the foreground (the docker/ mlflow service)
#   env     print the exports a client needs (URI, user, password): eval "$(scripts/mlflow-server.sh env)"
# It is the one writer when mapped sweep tasks log concurrently; it serves artifacts (--serve-artifacts),
# so clients need no access to the artifact folder.
# Authentication is on (`mlflow server --app-name basic-auth`): a request without valid credentials
# gets 401 (only /health and static files are open). The admin user is MLFLOW_TRACKING_USERNAME with
# MLFLOW_TRACKING_PASSWORD, the variables MLflow's client reads, so the same two set the server up and
# let the DAG, the ALS job and the CLI in. MLflow creates the admin once, on the first start against
# an empty user store; later changes go through its API (users/update-password) or UI.
# Env: BIND_HOST (127.0.0.1), MLFLOW_PORT (5000), MLFLOW_WORKERS (2),
#      MLFLOW_BACKEND_STORE_URI (default sqlite:///$PIPELINE_HOME/mlflow-server/mlflow.db; a postgresql:// URI for Postgres),
#      MLFLOW_ARTIFACTS_DESTINATION (default $PIPELINE_HOME/mlflow-server/artifacts),
#      MLFLOW_ALLOWED_HOSTS (Host headers accepted beyond localhost, e.g. "mlflow:5000" inside compose),
#      MLFLOW_TRACKING_USERNAME (admin), MLFLOW_TRACKING_PASSWORD (at least 12 characters; default: generated
#      once into $PIPELINE_HOME/mlflow-server/admin_password.generated),
#      MLFLOW_FLASK_SERVER_SECRET_KEY (default: generated once into $PIPELINE_HOME/mlflow-server/flask_secret_key),
#      MLFLOW_AUTH_DATABASE_URI (users and permissions; default sqlite:///$PIPELINE_HOME/mlflow-server/basic_auth.db),
#      MLFLOW_AUTH_DEFAULT_PERMISSION (READ: what a signed-in user may do where nothing was granted).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${MLFLOW_PORT:-5000}"
DIR="$PIPELINE_HOME/mlflow-server"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$DIR/mlflow.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-$DIR/artifacts}"
NAME="mlflow-$PORT"
URL="http://$CONNECT_HOST:$PORT"
ADMIN="${MLFLOW_TRACKING_USERNAME:-admin}"
PASSWORD_FILE="$DIR/admin_password.generated"
SECRET_FILE="$DIR/flask_secret_key"
if [[ -n "${MLFLOW_TRACKING_PASSWORD:-}" ]]; then PASSWORD_FROM=MLFLOW_TRACKING_PASSWORD; else PASSWORD_FROM="$PASSWORD_FILE"; fi

# generated FILE: a random secret kept in FILE (only its owner reads it), made on first use
generated() {
  [[ -s "$1" ]] || (umask 077 && "$PY" -c "import secrets; print(secrets.token_urlsafe(24))" >"$1")
  cat "$1"
}

# the admin's password: $MLFLOW_TRACKING_PASSWORD, else the generated one
admin_password() {
  if [[ -n "${MLFLOW_TRACKING_PASSWORD:-}" ]]; then echo "$MLFLOW_TRACKING_PASSWORD"; else generated "$PASSWORD_FILE"; fi
}

# basic_auth.ini for MLflow's auth app: where users live, the admin's name, what users get by default.
# No secret in it: the admin's password reaches MLflow as MLFLOW_AUTH_ADMIN_PASSWORD.
auth_config() {
  cat >"$DIR/basic_auth.ini" <<INI
# written by scripts/mlflow-server.sh on every start: change the environment, not this file
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$DIR/basic_auth.db}
admin_username = $ADMIN
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
}

# credentials_ok: does the server accept the admin's credentials? (prints the HTTP status otherwise)
credentials_ok() {
  "$PY" - "$URL/api/2.0/mlflow/users/current" "$ADMIN" "$(admin_password)" <<'PY'
import base64, sys, urllib.error, urllib.request
url, user, password = sys.argv[1:]
token = base64.b64encode(f"{user}:{password}".encode()).decode()
try:
    urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {token}"}), timeout=10)
except urllib.error.HTTPError as e:
    print(e.code)
    sys.exit(1)
PY
}

case "${1:-status}" in
  run)
    need mlflow
    mkdir -p "$DIR"
    [[ "$ARTIFACTS" == *://* ]] || mkdir -p "$ARTIFACTS"
    auth_config
    export MLFLOW_AUTH_CONFIG_PATH="$DIR/basic_auth.ini"
    MLFLOW_AUTH_ADMIN_USERNAME="$ADMIN"
    MLFLOW_AUTH_ADMIN_PASSWORD="$(admin_password)"
    MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(generated "$SECRET_FILE")}"
    export MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY
    extra=()
    [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]] && extra=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
    exec mlflow server --app-name basic-auth --host "$BIND_HOST" --port "$PORT" --workers "${MLFLOW_WORKERS:-2}" \
      --backend-store-uri "$BACKEND" --serve-artifacts --artifacts-destination "$ARTIFACTS" \
      --default-artifact-root mlflow-artifacts:/ "${extra[@]}"
    ;;
  start)
    start_bg "$NAME" "$0" run
    wait_http "$NAME" "$URL/health" 120
    if ! status=$(credentials_ok); then
      die "MLflow at $URL answers $status to user '$ADMIN' with the password from $PASSWORD_FROM: MLflow sets the admin's" \
          "password only when it creates the user (first start); use the password it was created with, change it" \
          "through $URL/api/2.0/mlflow/users/update-password, or stop the server and remove its user store" \
          "(${MLFLOW_AUTH_DATABASE_URI:-$DIR/basic_auth.db})"
    fi
    echo "MLflow tracking server at $URL (backend ${BACKEND%%://*}, artifacts $ARTIFACTS), authentication on:"
    echo "  user $ADMIN, password from $PASSWORD_FROM"
    echo "  eval \"\$($0 env)\"   # MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD"
    ;;
  env)  # the password itself is not printed: it stays in the environment or its file
    [[ -n "${MLFLOW_TRACKING_PASSWORD:-}" || -s "$PASSWORD_FILE" ]] \
      || die "no MLFLOW_TRACKING_PASSWORD and no $PASSWORD_FILE: start the server first ($0 start)"
    echo "export MLFLOW_TRACKING_URI=$URL"
    echo "export MLFLOW_TRACKING_USERNAME=$(printf %q "$ADMIN")"
    if [[ -n "${MLFLOW_TRACKING_PASSWORD:-}" ]]; then
      echo "export MLFLOW_TRACKING_PASSWORD  # as set in this environment"
    else
      echo "export MLFLOW_TRACKING_PASSWORD=\"\$(cat $(printf %q "$PASSWORD_FILE"))\""
    fi
    ;;
  stop) stop_bg "$NAME" ;;
  status)
    if http_ok "$URL/health"; then echo "MLflow up at $URL"; else echo "no MLflow server answers at $URL/health" >&2; exit 1; fi
    ;;
  -h|--help|help) usage ;;
  *) echo "usage: $0 start | stop | status | run | env" >&2; exit 2 ;;
esac
