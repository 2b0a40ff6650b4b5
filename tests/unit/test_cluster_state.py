"""The cluster's state file never makes ``down`` signal a session that is not the cluster's (stale file after a
crash or a reboot, a session id reused by someone else)."""

from __future__ import annotations

import os

import psutil
from cluster import Cluster, ClusterState, _boot_id


def state(**kw) -> ClusterState:
    return ClusterState(dir="/nonexistent", pg_port=1, redis_port=2, **kw)


def test_a_session_of_another_boot_is_not_ours():
    sid = os.getsid(0)
    assert Cluster._ours(state(boot_id=_boot_id()), sid)
    assert not Cluster._ours(state(boot_id="another-boot"), sid)


def test_a_reused_session_id_is_not_ours():
    sid = os.getsid(0)
    started = psutil.Process(sid).create_time()
    assert Cluster._ours(state(started={str(sid): started}), sid)
    assert not Cluster._ours(state(started={str(sid): started - 3600}), sid)   # the leader started later
