"""Tests of worker.reading, one file per module."""
