"""Trains digit models and publishes them, versioned, to object storage."""
