"""Tuning orchestration without Airflow: what one try of a tuning task does, and the one wait loop for remote jobs.

* :mod:`.run` — guards, budget, continuation and the launcher, in that order, before anything is paid for
  (:class:`~.run.TuningRun`); refusals raise :class:`~.run.Refused` (the Airflow layer fails without retries).
* :mod:`.wait` — :class:`~.wait.JobWait`, the single polling loop the operator's worker path (sync) and every job
  trigger (async) run; the two differ only in how they sleep and call the backend.

The submodules are imported by name (this package imports nothing itself, so that parsing a DAG stays light).
"""
