"""Triggers: one base job trigger (``base_job``), one small subclass per job kind.

The classes are importable from here, and their ``serialize()`` names this package, so a trigger deferred by one
version of this package resumes after an upgrade that moves modules around.
"""

from .base_job import BaseJobTrigger
from .batch_job import BatchPredictionJobTrigger
from .tuning_job import TuningJobTrigger

__all__ = ["BaseJobTrigger", "BatchPredictionJobTrigger", "TuningJobTrigger"]
