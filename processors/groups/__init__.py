"""Open groups for operators: what is open across every replica, closing one now.

``view`` folds the ``groups.open`` records of ``<prefix>.groups`` (pure),
``bus`` reads them and writes ``group.close_requested``, ``api`` serves both (and the
jobs and the ``/ui`` page) over HTTP, ``watch`` is the terminal view.
"""

from processors.groups.view import (
    GroupRow,
    find,
    latest,
    row_fields,
    rows,
)

__all__ = [
    "GroupRow",
    "find",
    "latest",
    "row_fields",
    "rows",
]
