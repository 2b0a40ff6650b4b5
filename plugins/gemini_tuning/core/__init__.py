"""Pure core: dataset rules, metrics, promotion gate. No Airflow, no network."""
