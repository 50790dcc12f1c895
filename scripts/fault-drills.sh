#!/usr/bin/env bash
# Usage: scripts/fault-drills.sh [PYTEST_ARGS...]   e.g. scripts/fault-drills.sh -k backfill
# The fault drills (tests/test_faults.py, tests/test_fault_backfill.py): the services `make up` starts
# (Spark master and worker, MLflow with authentication, Airflow's scheduler and API server) on free ports
# under a temporary PIPELINE_HOME, broken one way per drill while a night runs: MLflow restarted mid-sweep,
# the scheduler killed, the Spark master killed (after a configuration finished, and before any), the run
# folder's disk full; and a month of nights backfilled. On 2 cores the five drills take about 50 minutes
# and the month about an hour, more than CI's budget, so `make test` leaves them out (marker faults).
# Env: DRILL_NIGHTS (30) the backfill's nights. The output is also kept in $PIPELINE_HOME/logs/.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then usage; exit 0; fi
cd "$REPO"
[[ -x "$REPO/.venv/bin/python" ]] || die "no .venv: run 'make install' first"
log="$PIPELINE_HOME/logs/fault-drills-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p "$(dirname "$log")"
echo "fault drills: log $log"
"$REPO/.venv/bin/python" -m pytest -m faults tests/test_faults.py tests/test_fault_backfill.py -v -s -p no:cacheprovider --durations=0 "$@" 2>&1 \
  | tee "$log"
exit "${PIPESTATUS[0]}"
