"""Spark applications: each module has ``main(argv)`` and runs under ``spark-submit`` or in-process."""
