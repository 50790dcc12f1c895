"""Training pipeline for implicit-feedback music recommendations.

Every stage is a plain function in this package: it takes a frozen config and input
paths, writes its outputs atomically under a run folder, and returns a small summary.
The Airflow DAG in ``dags/`` only wires these functions together.
"""

__version__ = "0.1.0"
