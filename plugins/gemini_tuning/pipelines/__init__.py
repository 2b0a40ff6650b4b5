"""Pipelines as reviewed configuration: one YAML file per pipeline (``pipelines/<id>.yaml``), validated
(:mod:`.spec`, :mod:`.loader`), and the policy a run's conf is held to (:mod:`.policy`: a run may tighten the file's
policy, never loosen it). ``python -m gemini_tuning.pipelines check FOLDER`` checks files before review.

Pure: pydantic, PyYAML, the standard library and ``gemini_tuning.core`` only (no Airflow, no Google SDK, no HTTP).
"""
