"""The error root of the adapter (STYLE.md §10: errors say whether a retry can help)."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose.

    ``retriable`` says whether trying again later can help; ``exit_code`` is what the
    CLI exits with when this error reaches it (2 = bad usage or config, 1 = runtime).
    """

    retriable: bool = False
    exit_code: int = 1


class ConfigError(AdapterError):
    """The configuration is invalid; ``problems`` lists every problem, one line each."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(AdapterError):
    """The command line is wrong (exit code 2)."""

    exit_code = 2


class BrokerError(AdapterError):
    """A Kafka broker could not be started, reached or used."""

    retriable = True
