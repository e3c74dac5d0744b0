"""Load rounds: N concurrent DCMTK associations x M instances into the real roles, R
rounds, with each role's RSS, open file descriptors and threads after every round.

``python -m bench.load --rounds 3 --associations 25 --instances 400`` runs what
``tests/load/test_load_rounds.py`` runs (the same code: ``tests.helpers.load``,
``tests.helpers.loadrun``, ``tests.helpers.loadcheck``) at any size, prints one
figures line per round and the problems found (exit 1 if any): an instance not
answered Success or not in exactly one submitted job per pipeline, a file not
reclaimed, or memory, fds or threads not flat after the warm-up round.

The broker is ``--kafka``, else ``$KAFKA_BOOTSTRAP_SERVERS``, else a dedicated Apache
Kafka started for the run (``streams.broker.KafkaBroker``).
"""
