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

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo-data: install
	$(BIN)/pipeline synth --out $(PIPELINE_HOME)/data/demo --listens $(LISTENS) --seed $(SEED)

airflow-db: install
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(PIPELINE_HOME)/airflow-db-migrate.log 2>&1 || (cat $(PIPELINE_HOME)/airflow-db-migrate.log; exit 1)

## make demo: set up, generate the demo log, run the nightly DAG once, print the result
demo: demo-data airflow-db
	$(BIN)/airflow dags test music_recs_nightly -c '{"input_path": "$(PIPELINE_HOME)/data/demo", "input_format": "listenbrainz"}'
	$(BIN)/pipeline report

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
