-- Databases for the MLflow tracking server beside Airflow's metadata database: its backend
-- store, and the users and permissions of its basic-auth app.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
