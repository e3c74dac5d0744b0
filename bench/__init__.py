"""Benchmarks of the DICOM Stream Adapter (not part of the installed package).

Each sub-package is runnable with ``python -m bench.<name>`` from the repository root;
results are recorded in ``docs/benchmarks.md``.
"""
