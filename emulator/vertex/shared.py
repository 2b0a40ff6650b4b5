"""What the Vertex AI surfaces share: the path prefix, enum and int64 parsing as the REST mapping allows it,
labels, job states, a model version's checkpoint weights, and writing an object to the GCS emulator."""

from __future__ import annotations

import re
from urllib.parse import quote

import requests

from ..errors import invalid_argument, not_found

P = r"/(?P<ver>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"

ADAPTER_BY_INT = {0: "ADAPTER_SIZE_UNSPECIFIED", 1: "ADAPTER_SIZE_ONE", 6: "ADAPTER_SIZE_TWO", 2: "ADAPTER_SIZE_FOUR",
                  3: "ADAPTER_SIZE_EIGHT", 4: "ADAPTER_SIZE_SIXTEEN", 5: "ADAPTER_SIZE_THIRTY_TWO"}
JOB_STATE_BY_INT = {0: "JOB_STATE_UNSPECIFIED", 1: "JOB_STATE_QUEUED", 2: "JOB_STATE_PENDING", 3: "JOB_STATE_RUNNING",
                    4: "JOB_STATE_SUCCEEDED", 5: "JOB_STATE_FAILED", 6: "JOB_STATE_CANCELLING",
                    7: "JOB_STATE_CANCELLED", 8: "JOB_STATE_PAUSED", 9: "JOB_STATE_EXPIRED", 10: "JOB_STATE_UPDATING",
                    11: "JOB_STATE_PARTIALLY_SUCCEEDED"}
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def located(store, collection: str, project: str, location: str, id: str) -> tuple[str, dict]:
    """``projects/P/locations/L/<collection>/<id>`` and its stored object (404 when there is none); the store's
    collections are named like the resources' path segments."""
    name = f"projects/{project}/locations/{location}/{collection}/{id}"
    obj = store.get(collection, name)
    if obj is None:
        raise not_found(name)
    return name, obj


def enum_value(value, by_int: dict, field: str) -> str:
    if isinstance(value, bool):
        raise invalid_argument(field, f"Invalid value for enum field {field}: {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        if int(value) in by_int:
            return by_int[int(value)]
    elif isinstance(value, str) and value in by_int.values():
        return value
    raise invalid_argument(field, f"Invalid value for enum field {field}: {value!r}")


def int64(value, field: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise invalid_argument(field, f"Invalid value for int64 field {field}: {value!r}") from None


def gcs_jsonl_uri(uri, field: str) -> str:
    if (not isinstance(uri, str) or not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/.+", uri)
            or not uri.endswith(".jsonl")):
        raise invalid_argument(field, f"{field.rsplit('.', 1)[-1]} should be a GCS object of type JSONL.")
    return uri


def check_labels(labels, field: str = "tuning_job.labels") -> dict:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid_argument(field, "labels must be a map of at most 64 entries.")
    for k, v in labels.items():
        if not _LABEL_KEY.match(str(k)) or not isinstance(v, str) or not _LABEL_VALUE.match(v):
            raise invalid_argument(field, f"Invalid label {k!r}={v!r}: keys and values may contain only lowercase "
                                          "letters, digits, '_' and '-', at most 63 characters; "
                                          "keys start with a letter.")
    return dict(labels)


def checkpoint_weights(version: dict, checkpoint_id: str | None) -> str:
    """The artifact serving a model version's checkpoint (None: the version's ``defaultCheckpointId``)."""
    wanted = checkpoint_id or version.get("defaultCheckpointId")
    ckpt = next((c for c in version.get("checkpoints") or () if c["checkpointId"] == wanted), None)
    return (ckpt or {}).get("artifact") or version["artifact"]


def gcs_write(gcs_url: str, uri: str, data: bytes) -> None:
    bucket, _, name = uri[len("gs://"):].partition("/")
    resp = requests.post(f"{gcs_url}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
                         params={"uploadType": "media", "name": name}, data=data,
                         headers={"Content-Type": "application/x-ndjson"}, timeout=60)
    resp.raise_for_status()
