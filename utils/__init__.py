"""Shared pieces of the pipeline: settings, logging, errors, file helpers and telemetry."""
