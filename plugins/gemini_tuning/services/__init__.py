"""Services: Airflow-free orchestration of the backends — idempotence (identity, intent records, launcher), the
champion, the evaluation engine and its results, the report."""
