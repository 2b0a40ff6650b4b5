"""Response fields the emulator sends that the pinned protos do not have (the one list of them).

Every JSON body the emulator answers with is parsed, unknown fields rejected, into the protos of the pinned
``google-cloud-aiplatform`` and ``google-ai-generativelanguage`` (tests/emulator/test_strict_protos.py). A field
listed here is stripped before that parse, and only in the message it is listed under (by proto full name): each one
is a field the pinned python-genai types know (so google-genai reads it from Vertex's answers) but the pinned protos
do not have. Nothing else may be invented: a field that is neither in the proto nor listed here fails the test, and
so does an entry here that the proto has meanwhile gained or that no response carries any more.
"""

from __future__ import annotations

_GENAI = "python-genai 2.34 types"
_NOT_PINNED = "not in the pinned google-cloud-aiplatform 2.7.0 protos"

KNOWN_EXTRA_FIELDS: dict[str, dict[str, str]] = {
    # Served on /v1beta1 only (google-genai's API version); the plugin's parse_job reads all three.
    "google.cloud.aiplatform.v1beta1.TuningJob": {
        "tuningJobState": f"{_GENAI}.TuningJob.tuning_job_state (types.TuningJobState); {_NOT_PINNED}",
        "tuningJobMetadata": f"{_GENAI}.TuningJob.tuning_job_metadata (types.TuningJobMetadata: completed_step_count, "
                             f"completed_epoch_count); {_NOT_PINNED}",
        "gcsMetricsUri": f"{_GENAI}.TuningJob.gcs_metrics_uri; {_NOT_PINNED}",
    },
    # Vertex generateContent on /v1beta1 (google-genai's calls): the pinned v1 UsageMetadata has it, v1beta1 not.
    "google.cloud.aiplatform.v1beta1.GenerateContentResponse.UsageMetadata": {
        "trafficType": f"{_GENAI}.GenerateContentResponseUsageMetadata.traffic_type (types.TrafficType); in the "
                       "pinned v1 UsageMetadata but not in the pinned v1beta1 one",
    },
}
