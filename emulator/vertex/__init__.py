"""Vertex AI surface: tuningJobs, Model Registry, endpoints, operations, batch prediction, generateContent.

Paths are served under both ``/v1`` and ``/v1beta1`` (google-genai uses v1beta1; the GAPIC clients v1); operations
also under ``/ui`` (the GAPIC REST operations client polls there). Requests may carry enums as strings or integers
and int64 values as strings or numbers; responses use enum strings, as Google's do.

One :class:`VertexService` serves them all; its handlers live by resource in :mod:`.tuning`, :mod:`.registry`,
:mod:`.endpoints`, :mod:`.batch` and :mod:`.operations` (shared helpers: :mod:`.shared`). A tuning job's life is
:class:`emulator.jobs.JobLifecycle`'s, the same as a Gemini API tuned model's.
"""

from __future__ import annotations

from .. import learner
from ..jobs import JobLifecycle
from .batch import BatchPrediction
from .endpoints import Endpoints
from .operations import Operations
from .registry import ModelRegistry
from .shared import TERMINAL, P
from .tuning import TuningJobs, tunable_adapters

__all__ = ["VertexService", "tunable_adapters"]


class VertexService(TuningJobs, Endpoints, ModelRegistry, Operations, BatchPrediction):
    def __init__(self, emu):
        self.emu = emu
        self.store = emu.store
        self._models: dict[str, learner.TunedModel] = {}
        self._batch_running: set[str] = set()
        self._metrics_written: dict[str, int] = {}
        self.jobs = JobLifecycle(emu, "tuningJobs", terminal=TERMINAL, inputs=self._training_inputs,
                                 advance=self._advance)
        emu.startup_hooks.append(self.resume_batches)   # after the tuning jobs', as before the split
        r = emu.router
        r.add("POST", P + r"/tuningJobs", self.create_tuning_job)
        r.add("GET", P + r"/tuningJobs", self.list_tuning_jobs)
        r.add("GET", P + r"/tuningJobs/(?P<id>[^/:]+)", self.get_tuning_job)
        r.add("POST", P + r"/tuningJobs/(?P<id>[^/:]+):cancel", self.cancel_tuning_job)
        r.add("GET", P + r"/metadataStores/default/contexts/(?P<id>[^/:]+)", self.get_context)
        r.add("GET", r"/(?P<ver>v1|v1beta1)/publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+)",
              self.get_publisher_model)
        r.add("POST", P + r"/endpoints/(?P<id>[^/:]+):generateContent", self.endpoint_generate)
        r.add("POST", P + r"/publishers/google/models/(?P<model>[^/:]+):generateContent", self.base_generate)
        r.add("GET", P + r"/models", self.list_models)
        r.add("GET", P + r"/models/(?P<id>[^/:@]+):listVersions", self.list_versions)
        r.add("POST", P + r"/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?:mergeVersionAliases", self.merge_aliases)
        r.add("DELETE", P + r"/models/(?P<id>[^/:@]+)@(?P<version>[^/:]+):deleteVersion", self.delete_version)
        r.add("GET", P + r"/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?", self.get_model)
        r.add("PATCH", P + r"/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?", self.update_model)
        r.add("DELETE", P + r"/models/(?P<id>[^/:@]+)", self.delete_model)
        r.add("GET", P + r"/endpoints/(?P<id>[^/:]+)", self.get_endpoint)
        r.add("POST", P + r"/endpoints/(?P<id>[^/:]+):undeployModel", self.undeploy_model)
        r.add("DELETE", P + r"/endpoints/(?P<id>[^/:]+)", self.delete_endpoint)
        r.add("GET", r"/(?P<ver>v1|v1beta1|ui)/(?P<name>projects/[^/]+/locations/[^/]+/(?:[^:]+/)?operations/[^/:]+)",
              self.get_operation)
        r.add("POST", P + r"/batchPredictionJobs", self.create_batch)
        r.add("GET", P + r"/batchPredictionJobs", self.list_batches)
        r.add("GET", P + r"/batchPredictionJobs/(?P<id>[^/:]+)", self.get_batch)
        r.add("POST", P + r"/batchPredictionJobs/(?P<id>[^/:]+):cancel", self.cancel_batch)
        r.add("DELETE", P + r"/batchPredictionJobs/(?P<id>[^/:]+)", self.delete_batch)

