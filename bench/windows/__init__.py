"""Windows bench: ``instance.received`` -> closed groups, ours vs Quix Streams (issue 4).

Run from the repository root -- one command, both sides, one dedicated broker, one run
(about 10 minutes on 2 cores)::

    . .venv/bin/activate
    python -m bench.windows --events 200000 --keys 10000,1000

What it does:

1. starts a dedicated single-node Apache Kafka (``streams.broker.KafkaBroker``, data in a
   temp dir; ``--kafka HOST:PORT`` uses an existing broker instead);
2. in-process, no Kafka (:mod:`bench.windows.inproc`): memory per open instance and per
   open group (``tracemalloc``), and events/s of the window operator, of the AE Title Job
   Processor and of processor + codec, on a never-advanced ``TestScheduler``;
3. for each key count, ``--repeat`` times, for each side, on fresh topics: generates and
   pre-produces (not timed) ``--events`` events (:mod:`bench.windows.data`: 2 sessions
   per key, keys interleaved, sessions > 2 gaps apart, event time = ``received_at`` =
   record timestamp, one far-later sentinel per partition so every session closes by
   EVENT time), runs the side as a child process and times it
   (:mod:`bench.windows.sides`) from its consumer group becoming Stable to the broker
   append time (``LogAppendTime``) of the last expected closed group, counting every
   group and member; also CPU seconds of the process and of the broker, and peak RSS.

Sides:

* ``ours`` -- ``dicom-adapter process``, the real runtime (KafkaSource -> AE Title Job
  Processor, groupBy Patient, timeout 5 s -> ``group.closed`` on ``<prefix>.jobs``, acks=all,
  exactly-once offsets). ``--what-if=--gc-freeze`` adds the same runtime through
  :mod:`bench.windows.ours_tuned`; ``--ours shell`` a bench-only minimal shell
  (:mod:`bench.windows.ours_shell`, used before the runtime existed);
* ``quix`` -- Quix Streams ``session_window(5 s).agg(events=Collect())
  .final(closing_strategy="partition")`` (:mod:`bench.windows.quix_app`), at-least-once,
  no changelog, collecting what our groups keep (SOP/study/series UID + uri): the
  baseline of the ratios; ``quix, whole events`` collects whole events; ``--quix eos``
  adds exactly-once + changelog topics. Quix runs from its own venv,
  ``bench/windows/.venv`` (git-ignored), created on first use with
  ``pip install 'quixstreams>=3.27'`` -- it is not a project dependency.

Scale-out (issue 19): ``--partitions 2 --replicas 1,2`` runs our runtime side as one
process and as two replicas (same config, one consumer group, so Kafka gives each a
partition), interleaved in the same run; the two-process side is timed from its group
being Stable with both members (the dedicated broker then delays a new group's first
rebalance by 3 s, Kafka's default, so both join one generation; a member working alone
first or a rebalance later is reported and leaves that run out of the ratio), its CPU
is the sum of both processes', its peak RSS the larger one's. The report adds a table
of N processes' events/s over one's. Quix and the shell always run one process.

``--profile`` runs our side under pyinstrument (text reports in ``--work``). Results and
their discussion: ``docs/benchmarks.md``, section "Windows".
"""
