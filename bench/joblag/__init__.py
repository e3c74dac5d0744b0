"""Job lag: from a group's last instance to its ``group.closed``, on real processes.

``python -m bench.joblag`` starts a dedicated Apache Kafka broker (or uses ``--kafka``),
an ``scp`` and a ``process`` role as their own processes (``dicom-adapter``), sends
``--studies`` studies of ``--instances`` instances each through pynetdicom, one
association per study, a new study every ``--every`` seconds, and measures per group:

    lag = log time of its group.closed record - (log time of its last instance + timeout)

Both times come from the broker (the instances topic is ``LogAppendTime``; the jobs
topic's records are stamped by the process, on the same machine). Seed semantics: a
group closes within (0, 1] s after its deadline when every clock agrees. ``--skew``
starts a second SCP under libfaketime, its clock that far off, and alternates the
studies' associations between the two: the lag must not change. ``--load N`` adds an
ingest load: N ``storescu`` processes send the ingest bench's small corpus to the same SCP
(another AE title, grouped by the same process) over and over while the studies are sent
and until their groups have closed (issue 19: the job lag under ingest load).
"""
