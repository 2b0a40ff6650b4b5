"""The test harness: what the tests (and the benchmarks in ``scripts/``) share that is not a pytest fixture.

Importable as the top-level package ``harness``: pytest has ``tests/`` on its ``pythonpath`` (``pytest.ini``), the
venv has it in ``gemini_tuning_dev.pth`` (written by ``scripts/setup.sh``), and the Airflow processes the services
harness starts get it in ``PYTHONPATH``. (Not ``tests.harness``: looker_sdk installs a regular ``tests`` package in
site-packages that shadows ours.) Fixtures stay in ``tests/conftest.py``, which imports from here.

- :mod:`harness.paths`: the repository and the test data folders.
- :mod:`harness.clients`: the test project, location and bucket, and clients of the emulator.
- :mod:`harness.data`: demo rows and unique names.
- :mod:`harness.waits`: polling until something holds.
- :mod:`harness.emulator_process`: the emulator as its own process.
- :mod:`harness.airflow_services`: real Airflow services (api-server, scheduler, dag-processor, triggerer, ...).
- :mod:`harness.cluster`: a local distributed Airflow (PostgreSQL, Redis, Celery); :mod:`harness.cluster_hostname`
  is its ``[core] hostname_callable``.
- :mod:`harness.ui_stack`: the services with the plugin and the pipeline DAG against an emulator process;
  :mod:`harness.airflow_ui`: driving Airflow's own UI with Playwright.
- :mod:`harness.report_data`: report data built by the real summary and decision, for the report tests.
"""
