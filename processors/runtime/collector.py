"""CPython's cyclic garbage collector, tuned for a process that holds open groups.

With CPython's default thresholds (700, 10, 10) a young collection runs every 700
allocations of container objects, and the older generations' collections, which the
young ones trigger, walk every tracked object the process holds -- here the records
of every open group, hundreds of thousands of them with ten thousand patients open.
The records a processor allocates per event are freed by reference counting (they
form no cycles), so those walks find next to nothing. Raising the thresholds keeps
the same cost per young object and makes the walks of the old ones rare: CPU per
event 40 -> 31 µs on ``bench.windows`` at 10k open groups (docs/benchmarks.md,
"Windows"). Cyclic garbage, if any, lives a little longer: at most one young
generation (50,000 objects, a few MB).
"""

from __future__ import annotations

import gc

#: ``gc.set_threshold`` for the process role: (young, middle, old).
THRESHOLDS = (50_000, 20, 100)


def tune_for_open_groups() -> None:
    """Set :data:`THRESHOLDS` (process-wide; calling it again changes nothing)."""
    gc.set_threshold(*THRESHOLDS)
