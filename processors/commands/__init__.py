"""Sub-commands of ``dicom-adapter``: one module per command, each exposing
``register(subparsers)`` (see :mod:`processors.cli`)."""
