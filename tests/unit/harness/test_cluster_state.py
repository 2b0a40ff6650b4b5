"""The cluster's state file never makes ``down`` signal a session that is not the cluster's (stale file after a
crash or a reboot, a session id reused by someone else)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from harness.cluster import Cluster, ClusterState, _boot_id

pytestmark = pytest.mark.fast


def state(**kw) -> ClusterState:
    return ClusterState(dir="/nonexistent", pg_port=1, redis_port=2, **kw)


@pytest.fixture
def sid():
    """A session of our own: the test's own session may have its leader outside the PID namespace (CI containers
    report session id 0)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_session_of_another_boot_is_not_ours(sid):
    assert Cluster._ours(state(boot_id=_boot_id()), sid)
    assert not Cluster._ours(state(boot_id="another-boot"), sid)


def test_a_reused_session_id_is_not_ours(sid):
    started = psutil.Process(sid).create_time()
    assert Cluster._ours(state(started={str(sid): started}), sid)
    assert not Cluster._ours(state(started={str(sid): started - 3600}), sid)   # the leader started later
