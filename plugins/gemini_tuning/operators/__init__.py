"""Operators: each a thin layer over the services and backends, on one base operator (``base``).

One module per step of the pipeline: ``prepare``, ``tune``, ``evaluate``, ``gate``, ``report``, ``approval``,
``promote`` (promote and delete), ``rollback``. Import an operator from its module (nothing is imported here, so
that parsing a DAG loads only the steps it uses).
"""
