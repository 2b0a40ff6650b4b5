"""Operators: each a thin layer over the services and backends, on one base operator (``base``)."""
