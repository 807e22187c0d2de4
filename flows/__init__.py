"""Prefect flows: the pipeline's DAG, wiring only (the work is in `tasks/` and `parammix_core`)."""
