"""Soak: does the adapter stay bounded as its history grows? (issue 13)

``python -m bench.soak --scale 10k|100k|1M`` writes a long history through the real
roles -- instance events (10 per group, one pipeline: one job per 10 events) published
to the instances topic with their files on disk, grouped by a real ``process`` role,
submitted and reclaimed by a real ``submit`` role through the jobs ledger -- and at each
checkpoint (10k, 100k, 1M events, up to ``--scale``) restarts both roles cold and
measures:

* start-up: seconds from spawn to ``/readyz`` 200, and for the submit role to the end
  of its history read (the ``caught up`` log line of every jobs partition, submitter
  and reclaimer), with the records each read;
* RSS of each role once caught up and idle;
* disk used under the storage folder after retention (payload retention 0), against
  the empty folder at the start.

The instance files skip the SCP (ingest has its own bench, ``bench.ingest``): this
measures what history costs, not the receiving. Results: docs/benchmarks.md, "Soak".
"""
