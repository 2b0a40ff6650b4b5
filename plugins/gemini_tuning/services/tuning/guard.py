"""The scheduled-run demo guard, applied before any read, upload or create (the rule is ``core.safety``'s).

Kept apart from :mod:`.run` so that the operators that only need the guard (``operators.guards``) import nothing
heavier than ``core.safety``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ...core.safety import REPO_DEMO_DIR, SafetyVerdict, decide

BANNER = "!" * 100


class Refused(Exception):
    """Nothing was created and a retry would not change that (guard, budget, inputs, ``continue_from``); the
    Airflow layer fails the task without retries.

    :param message: what was refused and what to change (the exception's only argument).
    """


def demo_guard(*, run_type: str | None, api_base_url: str | None, arguments: Mapping[str, object], log,
               demo_roots: Iterable[str] | None = None) -> SafetyVerdict:
    """Refuse an unattended run that would use the demo data or bucket against Google's real services; log a loud
    warning for a manual one (``core.safety.decide``).

    :param run_type: the DAG run's type (``manual``, ``scheduled``, …; None: unknown, refused like unattended).
    :param api_base_url: the endpoint in use (None: Google's).
    :param arguments: name -> path or URI of every input and output location.
    :param log: where the warning goes.
    :param demo_roots: directories of demo data besides the repository's.
    :raises Refused: with the verdict's message.
    """
    verdict = decide(run_type=run_type, api_base_url=api_base_url, arguments=arguments,
                     demo_roots=tuple(demo_roots or ()) + (REPO_DEMO_DIR,))
    if not verdict.allowed:
        raise Refused(verdict.message)
    if verdict.warn:
        log.warning("\n%s\n%s\n%s", BANNER, verdict.message, BANNER)
    return verdict
