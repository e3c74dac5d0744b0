"""Shared test helpers (real DICOM peers, datasets, Kafka readers)."""
