"""Intent records: a small JSON object in GCS per task instance, written before the paid create call and updated
with the job name right after it, always with a generation precondition (compare-and-swap).

Why GCS and not ``task_state_store``: a clear through the REST API may discard the latter (apache/airflow #72100),
and a record must survive exactly those user actions. A read error is raised, never taken for "no record".
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from .backends import gcs


@dataclass
class Intent:
    key: str
    fingerprint: str
    attempt: int
    backend: str
    job_name: str | None = None
    created_at: float = field(default_factory=time.time)
    task: dict = field(default_factory=dict)          # dag_id, task_id, run_id, map_index (for humans)
    history: list = field(default_factory=list)       # earlier attempts: [{attempt, job_name, fingerprint}]

    @classmethod
    def from_dict(cls, d: dict) -> "Intent":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class IntentStore:
    def __init__(self, client, prefix_uri: str):
        self.client = client
        self.prefix = prefix_uri.rstrip("/")
        gcs.parse_gs_uri(self.prefix + "/x")  # validate early

    def uri(self, key: str) -> str:
        return f"{self.prefix}/intents/{key}.json"

    def read(self, key: str) -> tuple[Intent | None, int]:
        """(record, generation); (None, 0) only when the object does not exist."""
        obj, generation = gcs.read_json(self.client, self.uri(key))
        return (Intent.from_dict(obj) if obj is not None else None), generation

    def save(self, intent: Intent, generation: int) -> int:
        """Writes iff the stored generation is still ``generation`` (0: must not exist); raises
        ``gcs.GenerationMismatch`` when another writer got there first."""
        return gcs.write_json(self.client, self.uri(intent.key), asdict(intent), if_generation_match=generation)
