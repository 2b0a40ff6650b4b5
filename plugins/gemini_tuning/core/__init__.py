"""Pure core: dataset rules, metric vocabulary and metrics, promotion gate, polling and the wait state machine, job
states. Dataclasses and functions; no Airflow, no network."""
