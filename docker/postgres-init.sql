-- A second database for the MLflow tracking server beside Airflow's metadata database.
CREATE DATABASE mlflow;
