# Two commands on a fresh machine (Python 3.11 + Java 17): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
LISTENS ?= 200000
SEED    ?= 0

# Everything a run writes lives under var/ (git-ignored). The rest of the embedded Airflow set-up
# (AIRFLOW_HOME, DAG folder, Spark connection) is src/pipeline/airflow_env.py's, used by `pipeline demo`
# and the scripts alike.
export PIPELINE_HOME ?= $(CURDIR)/var
export PATH := $(BIN):$(PATH)

.PHONY: install demo demo-data airflow-db test test-fast lint clean up down

# What a run and its set-up print goes to log files here; the terminal gets a summary.
LOGS := $(PIPELINE_HOME)/logs

$(VENV)/.installed: requirements.txt pyproject.toml
	@mkdir -p $(LOGS)
	@echo "Installing the venv $(VENV) (log: $(LOGS)/install.log)"
	@($(PYTHON) -m venv $(VENV) \
	  && $(BIN)/pip install --disable-pip-version-check -r requirements.txt \
	  && $(BIN)/pip install --disable-pip-version-check --no-deps -e .) > $(LOGS)/install.log 2>&1 \
	  || (tail -n 30 $(LOGS)/install.log; echo "install failed; full log: $(LOGS)/install.log"; exit 1)
	@touch $@

install: $(VENV)/.installed

demo-data: install
	@mkdir -p $(LOGS)
	@echo "Writing $(LISTENS) synthetic listens to $(PIPELINE_HOME)/data/demo (seed $(SEED))"
	@$(BIN)/pipeline synth --out $(PIPELINE_HOME)/data/demo --listens $(LISTENS) --seed $(SEED) > $(LOGS)/synth.log 2>&1 \
	  || (tail -n 30 $(LOGS)/synth.log; exit 1)

airflow-db: install
	@$(BIN)/python -m pipeline.airflow_env --repo $(CURDIR) migrate --log $(LOGS)/airflow-db-migrate.log

## make demo: set up, generate the demo log, run the nightly DAG once, print the result
## (one line per task; Airflow's and Spark's own output goes to $(LOGS)/demo-<time>.log)
demo: demo-data airflow-db
	@$(BIN)/pipeline demo --input $(PIPELINE_HOME)/data/demo --format listenbrainz

## make test: set up and run the whole suite (unit, Spark, end to end)
test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not spark and not e2e"

up: install
	scripts/up.sh

down:
	scripts/down.sh

clean:
	rm -rf var spark-warehouse metastore_db derby.log
