"""Getting events in and out: DICOM SCP, storage, Kafka, serialization, observables.

This package never imports :mod:`processors` (data flows one way; a test enforces it).
"""
