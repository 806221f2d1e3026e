"""Celery workers and the scandigits CLI: batches in, labeled results out."""

import trainer  # noqa: F401  (sets OpenCV's pixel limit before any worker module imports cv2)
