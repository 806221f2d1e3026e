"""Tests of worker.forms, one file per module."""
