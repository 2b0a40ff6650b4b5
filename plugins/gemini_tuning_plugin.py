"""Airflow's plugins folder entry: the plugin lives in the package (``gemini_tuning.plugin``).

Airflow imports every ``.py`` file of the plugins folder by its file name; ``.airflowignore`` keeps it from
importing the package's modules that way too (they are imported normally: the plugins folder is on ``sys.path``).
When the package is installed (``pip install .``), this file is not needed: the ``airflow.plugins`` entry point
registers the same plugin.
"""

from gemini_tuning.plugin import GeminiTuningPlugin

__all__ = ["GeminiTuningPlugin"]
