# Two commands on a fresh machine (Python 3.11 + Java 17): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
LISTENS ?= 200000
SEED    ?= 0

# The embedded set-up: everything a run writes lives under var/ (git-ignored).
export PIPELINE_HOME ?= $(CURDIR)/var
export AIRFLOW_HOME ?= $(PIPELINE_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark", "host": "local[*]"}
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
	@mkdir -p $(AIRFLOW_HOME) $(LOGS)
	@test -e $(AIRFLOW_HOME)/airflow.cfg || cp scripts/airflow.cfg $(AIRFLOW_HOME)/airflow.cfg
	@$(BIN)/airflow db migrate > $(LOGS)/airflow-db-migrate.log 2>&1 || (tail -n 30 $(LOGS)/airflow-db-migrate.log; exit 1)

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
