"""``[core] hostname_callable`` for the local cluster: each worker and triggerer reports the host name its
environment names (``AIRFLOW_CLUSTER_HOSTNAME``), so the REST API tells which process holds a task or a trigger."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("AIRFLOW_CLUSTER_HOSTNAME") or socket.getfqdn()
