"""Team access to a pipeline's DAGs: the YAML ``access:`` section → Airflow's DAG-level ``access_control``.

A pipeline's YAML names, per role, what its members may do with the pipeline's DAGs
(``gemini_tuning__<id>`` and ``gemini_tuning__<id>__rollback``)::

    access:
      team_support: [read, trigger]
      team_leads: [read, trigger, approve]

Per-DAG permissions exist only with the FAB auth manager (``apache-airflow-providers-fab``;
``[core] auth_manager = airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager``). Airflow's default
SimpleAuthManager has four fixed roles (VIEWER, USER, OP, ADMIN) that apply to every DAG alike, and ignores
``access_control``.

What FAB 3.x accepts in ``access_control`` (``RESOURCE_DETAILS_MAP`` of its security manager) is two resources
only: ``"DAGs"`` (``can_read``, ``can_edit``, ``can_delete``, stored as ``DAG:<dag_id>``) and ``"DAG Runs"``
(``can_read``, ``can_create``, ``can_delete``, ``menu_access``, stored as ``DAG Run:<dag_id>``); any other
resource name (``"Task Instances"``, ``"HITL Detail"``, …) fails the DAG's permission sync with
``DagAccessControlValidationError``. The sub-entities of a DAG (task instances, XCom, logs, HITL details) are
authorized by FAB as a *global* permission of the role on that resource AND the DAG-level permission on the DAG
(read for GET, ``can_edit`` for any other method). So a team role needs both:

* the DAG-level part, :func:`access_control` (set on the DAG, synced by the dag-processor), and
* the role-level part, :func:`role_permissions` (granted once to the role, e.g. ``airflow roles add-perms``);
  it opens nothing by itself: every one of them is gated by the DAG-level permission of the DAG asked about.

What each verb grants:

* ``read``: ``DAGs.can_read`` and ``DAG Runs.can_read`` on the DAG; role-level ``can_read`` on its runs, task
  instances, XCom, task logs, code, versions, warnings, dependencies and HITL details.
* ``trigger``: ``DAG Runs.can_create`` and ``DAGs.can_edit`` on the DAG (Airflow authorizes ``POST
  /dags/{id}/dagRuns`` as "create a run" AND "edit the DAG"; ``can_edit`` also lets the role pause/unpause it).
* ``approve``: ``DAGs.can_edit`` on the DAG and role-level ``can_read``/``can_edit`` on ``HITL Detail`` (answering
  the approval task is ``PUT`` on the HITL detail, i.e. ``HITL Detail.can_edit`` AND ``DAGs.can_edit``). It does
  not imply ``trigger``: creating a run needs ``DAG Runs.can_create``, which the role-level part never grants.

Pure: no Airflow import, so a pipeline definition can be validated without Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

VERBS = ("read", "trigger", "approve")

#: FAB's DAG-level resources (``access_control`` keys) and the actions each verb grants on them
RESOURCE_DAG = "DAGs"
RESOURCE_DAG_RUN = "DAG Runs"
DAG_PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    "read": {RESOURCE_DAG: frozenset({"can_read"}), RESOURCE_DAG_RUN: frozenset({"can_read"})},
    "trigger": {RESOURCE_DAG: frozenset({"can_edit"}), RESOURCE_DAG_RUN: frozenset({"can_create"})},
    "approve": {RESOURCE_DAG: frozenset({"can_edit"})},
}

#: role-level (global) ``(action, resource)`` pairs each verb needs; FAB checks each of them together with the
#: DAG-level permission of the DAG asked about, so they grant nothing on a DAG the role has no DAG-level access to
ROLE_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    "read": frozenset({("can_read", r) for r in (
        "DAG Runs", "Task Instances", "XComs", "Task Logs", "DAG Code", "DAG Versions", "DAG Warnings",
        "DAG Dependencies", "HITL Detail", "Website")}),
    "trigger": frozenset(),
    "approve": frozenset({("can_read", "HITL Detail"), ("can_edit", "HITL Detail")}),
}


def _verbs(role: object, verbs: object) -> list[str]:
    if not isinstance(role, str) or not role.strip():
        raise ValueError(f"access: a role name must be a non-empty string, not {role!r}")
    if isinstance(verbs, str) or not isinstance(verbs, Iterable):
        raise ValueError(f"access: {role}: expected a list of {', '.join(VERBS)}, not {verbs!r}")
    verbs = list(verbs)
    unknown = [v for v in verbs if v not in VERBS]
    if unknown:
        raise ValueError(f"access: {role}: unknown permission {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(VERBS)}")
    return verbs


def access_control(access: Mapping[str, Iterable[str]] | None) -> dict[str, dict[str, set[str]]]:
    """Airflow's DAG-level ``access_control`` for a pipeline's ``access:`` section.

    ``{"team_a": ["read", "trigger"]}`` → ``{"team_a": {"DAGs": {"can_read", "can_edit"},
    "DAG Runs": {"can_read", "can_create"}}}``. Pass it as ``DAG(access_control=...)``: with the FAB auth manager
    the dag-processor syncs it into the roles (the roles must exist by then, or the DAG fails to sync) and revokes
    any DAG-level permission of a non-Admin role that it does not list. An empty section gives ``{}``: no
    DAG-level access for anyone but Admin (and roles with permissions on all DAGs). A role's role-level part is
    :func:`role_permissions`.

    :param access: role name → list of ``read``, ``trigger``, ``approve`` (None or empty: nobody).
    :return: role name → ``{"DAGs": {...}, "DAG Runs": {...}}`` (only the resources the role gets something on).
    :raises ValueError: an unknown verb, a role name that is not a non-empty string, or verbs that are not a list.
    """
    if access is None:
        return {}
    if not isinstance(access, Mapping):
        raise ValueError(f"access: expected a mapping of role name to permissions, not {type(access).__name__}")
    out: dict[str, dict[str, set[str]]] = {}
    for role, verbs in access.items():
        grants: dict[str, set[str]] = {}
        for verb in _verbs(role, verbs):
            for resource, actions in DAG_PERMISSIONS[verb].items():
                grants.setdefault(resource, set()).update(actions)
        out[role] = grants
    return out


def role_permissions(verbs: Iterable[str]) -> set[tuple[str, str]]:
    """The role-level ``(action, resource)`` pairs a role needs for ``verbs`` on the DAGs it has access to.

    :param verbs: ``read``, ``trigger``, ``approve`` (the union of what the role has on any pipeline).
    :return: e.g. ``{("can_read", "Task Instances"), ...}``, for ``airflow roles add-perms ROLE -r RESOURCE -a
        ACTION`` or the FAB roles API.
    :raises ValueError: an unknown verb.
    """
    out: set[tuple[str, str]] = set()
    for verb in _verbs("role", verbs):
        out |= ROLE_PERMISSIONS[verb]
    return out
