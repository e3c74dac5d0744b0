"""Known transient broker states are DEBUG lines, not errors, unless they last (issue 20)."""

from __future__ import annotations

import logging

from aiokafka.errors import (
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    NotLeaderForPartitionError,
)

from processors.logs import TransientBrokerStates

COORDINATOR = "aiokafka.consumer.group_coordinator"


def record(
    msg: str, *args: object, level: int = logging.ERROR, name: str = COORDINATOR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_coordinator_not_available_at_start_becomes_debug() -> None:
    clock = Clock()
    quiet = TransientBrokerStates(show_debug=False, clock=clock)
    loud = TransientBrokerStates(show_debug=True, clock=clock)
    rec = record("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    assert quiet.filter(rec) is False
    rec = record("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    assert loud.filter(rec) is True
    assert (rec.levelno, rec.levelname) == (logging.DEBUG, "DEBUG")
    dead = record(
        "Marking the coordinator dead (node %s)for group %s.", 1, "g", level=logging.WARNING
    )
    assert quiet.filter(dead) is False


def test_other_errors_keep_their_level() -> None:
    quiet = TransientBrokerStates(show_debug=False, clock=Clock())
    fatal = record("Group Coordinator Request failed: %s", GroupAuthorizationFailedError())
    assert quiet.filter(fatal) is True and fatal.levelno == logging.ERROR
    elsewhere = record("Marking the coordinator dead (node %s)for group %s.", 1, "g", name="app")
    assert quiet.filter(elsewhere) is True and elsewhere.levelno == logging.ERROR
    info = record(
        "Group Coordinator Request failed: %s",
        GroupCoordinatorNotAvailableError(),
        level=logging.INFO,
    )
    assert quiet.filter(info) is True and info.levelno == logging.INFO


def test_a_state_that_lasts_beyond_patience_is_an_error_again_and_a_new_episode_is_not() -> None:
    clock = Clock()
    quiet = TransientBrokerStates(show_debug=False, patience_s=60.0, clock=clock)

    def failed() -> logging.LogRecord:
        return record("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())

    for _ in range(61):  # one a second for a minute: still the start-up election
        assert quiet.filter(failed()) is False
        clock.now += 1.0
    stuck = failed()
    assert quiet.filter(stuck) is True and stuck.levelname == "ERROR"
    clock.now += 61.0  # quiet for longer than patience: the next one is a new episode
    assert quiet.filter(failed()) is False


def test_a_new_topic_without_a_leader_yet_is_debug() -> None:
    quiet = TransientBrokerStates(show_debug=False, clock=Clock())
    produce = record(
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        "tp",
        NotLeaderForPartitionError,  # the producer passes the class
        level=logging.WARNING,
        name="aiokafka.producer.sender",
    )
    fetch = record(
        "Failed fetch offsets from %s: %s",
        1,
        NotLeaderForPartitionError(),
        name="aiokafka.consumer.fetcher",
    )
    assert quiet.filter(produce) is False and quiet.filter(fetch) is False
