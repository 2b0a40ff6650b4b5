"""Gemini supervised tuning for Apache Airflow: operators, sensors and triggers for Vertex AI and the Gemini API."""

__version__ = "0.1.0"
