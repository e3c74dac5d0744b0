"""Ingest benchmark: DCMTK ``storescu`` into our SCP, pynetdicom, DCMTK and Orthanc.

One command runs everything (about 10-15 minutes on a 2-core machine)::

    python -m bench.ingest --reps 3 --no-nodelay     # the full run in docs/benchmarks.md
    python -m bench.ingest --reps 1                  # a quick look
    python -m bench.ingest --receivers ours --corpus big --parallel 4 --reps 1

* Corpus (:mod:`.corpus`): generated once with pydicom + numpy and cached in
  ``~/.cache/dicom-adapter/bench-ingest`` — ``big``, 720 CT 512x512 16-bit instances
  (3 patients x 2 studies x 3 series x 40) and ``small``, 2,000 64x64 ones.
* Senders (:mod:`.sender`): 1 and 4 parallel ``/usr/bin/storescu`` associations with
  ``TCP_NODELAY=1`` (the reference's "main table"); ``--no-nodelay`` adds an
  as-shipped row (no TCP_NODELAY anywhere) on a 100-instance subset.
* Receivers, each started fresh per run on its own port and empty folder
  (:mod:`.receivers`, :mod:`.adapter`, :mod:`.orthanc`): ``dicom-adapter scp`` with
  events acknowledged by a real Apache Kafka (the bench starts
  ``streams.broker.KafkaBroker`` with its own data folder, or uses
  ``KAFKA_BOOTSTRAP_SERVERS``); pynetdicom's bundled ``storescp`` app (with
  TCP_NODELAY); ``storescp --fork -dhl +xa -pm``; Orthanc when installed.
* Every run is verified (files on disk, Orthanc's ``/statistics``, and for ours also
  one ``instance.received`` per instance on the topic, with exactly the corpus's SOP
  Instance UIDs); the report shows medians, ratios, receiver CPU per instance
  (:mod:`.procstat`, whole process tree), peak RSS, Kafka broker CPU, and CPU taken by
  other processes during each send.

Results go to ``<work>/results/`` (``tables.md``, ``raw.json``); exit status 1 if a
run did not verify.
"""
