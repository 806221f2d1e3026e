"""Celery workers and the scandigits CLI: batches in, labeled results out."""
