"""What the GCS functions raise, the size check every whole-object read makes first, and what a 412 looks like."""

from __future__ import annotations

from google.api_core.exceptions import PreconditionFailed


class GenerationMismatch(Exception):
    """A compare-and-swap write found another generation than the expected one (HTTP 412).

    :param uri: the ``gs://`` object written.
    :param expected: the generation the write was conditioned on (0: the object had to be absent).
    :param actual: the generation found (0: absent); None when unknown.
    """

    def __init__(self, uri: str, expected: int, actual: int | None = None):
        self.uri = uri
        self.expected = expected
        self.actual = actual
        now = "absent" if actual == 0 else ("unknown" if actual is None else f"generation {actual}")
        want = "absent" if expected == 0 else f"generation {expected}"
        super().__init__(f"{uri} changed concurrently: expected {want}, found {now}")


class ContentMismatch(Exception):
    """A create-only upload found an object with other content at its (content-addressed) name."""


class ObjectTooLarge(ValueError):
    """An object or local file is larger than a read allows (raised before it is downloaded), or a record larger
    than its readers allow (raised by its writer before it is uploaded: ``services.champion_pointer``).

    :param uri: the object or local file (or record) that is too large.
    :param size: its size in bytes.
    :param max_bytes: the limit it exceeds, in bytes.
    :param what: what the limit is for, in the message (``"this read"`` when not said).
    """

    def __init__(self, uri: str, size: int, max_bytes: int, what: str = "this read"):
        self.uri, self.size, self.max_bytes = uri, size, max_bytes
        super().__init__(f"{uri} has {size:,} bytes, more than the {max_bytes:,} allowed for {what} (max_bytes)")


def check_size(uri: str, size: int | None, max_bytes: int | None, what: str) -> None:
    """Raise :class:`ObjectTooLarge` when a known ``size`` exceeds ``max_bytes`` (None: no limit, or unknown)."""
    if max_bytes is not None and size is not None and int(size) > int(max_bytes):
        raise ObjectTooLarge(uri, int(size), int(max_bytes), what)


def is_412(exc: BaseException) -> bool:
    """A failed precondition (``ifGenerationMatch``), however the client reports it."""
    if isinstance(exc, PreconditionFailed):
        return True
    response = getattr(exc, "response", None)  # google.cloud.storage.exceptions.InvalidResponse (resumable/open)
    return getattr(response, "status_code", None) == 412
