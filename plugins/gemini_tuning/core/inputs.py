"""Where inputs may come from: local paths only under the input roots, ``gs://`` objects only in allowed buckets.

Purpose
    A run's inputs (``training_data``, ``eval_prompts``, ``system_instruction``, ...) are strings anyone who may
    trigger the DAG can set in the run's conf. Without a check they name any file the worker can read (a
    credentials file, another team's data, ``/proc/self/environ``) and any bucket the connection can read; a
    ``.txt`` system instruction is even copied into XCom verbatim. :func:`check_input_location` is the rule the
    operators apply before they open anything.
How it works
    A local path is resolved with ``os.path.realpath`` (symlinks and ``..``), and so are the roots; it must be a
    root or lie below one (component-wise: ``/x/include-evil`` is not under ``/x/include``). The resolved path is
    returned, so the caller opens exactly what was checked. A ``gs://`` URI must name one of ``buckets``. Every
    other scheme (``http://``, ``file://``) and a path with a NUL byte are refused.
What it does not do
    Read configuration: the Airflow layer (``operators.inputs``) builds the :class:`InputPolicy` from the settings
    ``[gemini_tuning] input_roots`` and ``allowed_buckets`` and the run's own bucket. Nor does it look inside the
    file: size and line bounds are the readers' (``core.dataset.iter_lines``, ``backends.gcs``).
Known limitations
    A symlink swapped *after* the check is not caught (the path is opened after it); the roots are trusted
    directories, writable only by the deployment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from .gcs_uri import split_gs_uri

__all__ = ["InputNotAllowed", "InputPolicy", "check_input_location", "split_setting"]

SETTINGS_HINT = "settings [gemini_tuning] input_roots and allowed_buckets"


class InputNotAllowed(ValueError):
    """An input names a local path outside the input roots, a bucket that is not allowed, or another scheme.

    :param field: the argument or setting that named the input (``training_data``, …), in the message.
    :param value: the path or URI refused.
    :param reason: why it was refused (outside the roots, bucket not allowed, …).
    :param roots: the allowed local roots (resolved real paths), listed in the message.
    :param buckets: the allowed bucket names, listed in the message as ``gs://`` URIs.
    """

    def __init__(self, field: str, value: str, reason: str, roots: Iterable[str], buckets: Iterable[str]):
        self.field, self.value, self.reason = field, value, reason
        self.roots, self.buckets = tuple(roots), tuple(buckets)
        where = ", ".join(self.roots) or "(none)"
        which = ", ".join(f"gs://{b}" for b in self.buckets) or "(none)"
        super().__init__(f"{field}={value!r} is not an allowed input ({reason}); allowed: local paths under "
                         f"{where}, gs:// objects in {which} ({SETTINGS_HINT})")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def check_input_location(value: str, *, field: str, roots: Iterable[str], buckets: Iterable[str]) -> str:
    """``value`` if it may be read, as the location to open: the resolved real path of a local file under one of
    ``roots``, or the ``gs://`` URI unchanged when its bucket is one of ``buckets``. Raises
    :class:`InputNotAllowed` naming ``field``, the value and what is allowed."""
    real_roots = tuple(dict.fromkeys(os.path.realpath(r) for r in roots if r))
    buckets = tuple(dict.fromkeys(b for b in buckets if b))

    def refuse(reason: str) -> InputNotAllowed:
        return InputNotAllowed(field, value, reason, real_roots, buckets)

    if not isinstance(value, str) or not value:
        raise refuse("empty")
    if "\x00" in value:
        raise refuse("the path holds a NUL byte")
    if value.startswith("gs://"):
        try:
            bucket, _ = split_gs_uri(value)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        if bucket not in buckets:
            raise refuse(f"the bucket gs://{bucket} is not allowed")
        return value
    if "://" in value:
        raise refuse("only local paths and gs:// URIs are inputs")
    real = os.path.realpath(value)
    if not any(_under(real, root) for root in real_roots):
        raise refuse(f"{real} is outside the input roots")
    return real


def split_setting(text: str | None, *, paths: bool) -> tuple[str, ...]:
    """A list setting: comma- (or, for ``paths``, colon-) separated; buckets may also be given as ``gs://name``."""
    if not text:
        return ()
    seps = ",:" if paths else ", \t\n;"
    items = [text]
    for sep in seps:
        items = [part for item in items for part in item.split(sep)]
    out = []
    for item in items:
        item = item.strip()
        if not paths:
            item = item.removeprefix("gs://").strip("/")
        if item:
            out.append(item)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class InputPolicy:
    """The input roots and allowed buckets of one task (built by ``operators.inputs.input_policy``).

    :param roots: local directories a local input must resolve under (empty: no local input is allowed).
    :param buckets: bucket names (without ``gs://``) a ``gs://`` input may be in (empty: none is allowed).
    """

    roots: tuple[str, ...]
    buckets: tuple[str, ...]

    def check(self, value: str, field: str) -> str:
        """:func:`check_input_location` under this policy."""
        return check_input_location(value, field=field, roots=self.roots, buckets=self.buckets)
