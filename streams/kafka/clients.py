"""Where every aiokafka client of the adapter is built: one connection, one set of options.

Consumers, producers and admin clients are created only here, so connection settings
(the bootstrap address, and TLS and SASL from ``kafka.security``) apply to every role
and command alike. Delivery settings follow STYLE.md §9: consumers never auto-commit
and start at the earliest offset when their group has no commit.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed

from streams.config import KafkaConfig
from streams.config.security import KafkaSecurity
from streams.errors import AdapterError, UsageError
from streams.tls import client_context

#: A group leader that assigns while the broker's metadata still lacks a topic (just
#: after an outage) gives nobody its partitions; the group rejoins once a metadata
#: refresh shows them. aiokafka's default refresh is 5 minutes (chaos seed 2026: the
#: submitter sat on no partitions past the 150 s the run allows to settle).
METADATA_MAX_AGE_MS = 15_000


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """How to reach the broker: its bootstrap address and client options shared by
    every client (``security_protocol``, ``ssl_context``, SASL; never in ``repr``)."""

    bootstrap_servers: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.bootstrap_servers

    @classmethod
    def of(cls, config: KafkaConfig) -> KafkaConnection:
        """The connection ``config`` describes; its address must be resolved by now (the
        CLI fills it from ``--kafka``, the environment or the embedded broker)."""
        if not config.bootstrap_servers:
            raise UsageError(
                "no Kafka address: pass --kafka HOST:PORT or set kafka.bootstrap_servers "
                "(or KAFKA_BOOTSTRAP_SERVERS)"
            )
        return cls(config.bootstrap_servers, security_options(config.security))

    def consumer(
        self, *, client_id: str, group_id: str | None = None, **settings: Any
    ) -> AIOKafkaConsumer:
        """A consumer (not started): manual commits, ``earliest`` without a commit, and
        metadata refreshed every :data:`METADATA_MAX_AGE_MS`."""
        kwargs: dict[str, Any] = {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "metadata_max_age_ms": METADATA_MAX_AGE_MS,
            **self.options,
            **settings,
        }
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            **kwargs,
        )

    def producer(self, *, client_id: str, **settings: Any) -> AIOKafkaProducer:
        """A producer (not started); the caller chooses acks and idempotence."""
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=client_id,
            **{**self.options, **settings},
        )

    @property
    def protocol(self) -> str:
        """Kafka's ``security.protocol`` of this connection (``PLAINTEXT`` by default)."""
        return str(self.options.get("security_protocol", "PLAINTEXT"))

    def admin(self, *, client_id: str, request_timeout_ms: int = 30_000) -> AIOKafkaAdminClient:
        """An admin client (not started)."""
        return AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            **self.options,
        )

    async def check_credentials(self, timeout_s: float = 10.0) -> None:
        """Fail with one line when the broker refuses our TLS certificate check or our
        login, which no retry can fix; an unreachable broker is not an error here.

        aiokafka's clients report either only as "unable to bootstrap" (and the SCP
        would keep every event in its outbox), so one connection is made directly.
        """
        if not self.options:
            return
        host, _, port = self.bootstrap_servers.split(",", maxsplit=1)[0].rpartition(":")
        user = self.options.get("sasl_plain_username")
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(
                    host.strip("[]"), int(port), client_id="dicom-adapter-login", **self.options
                )
            conn.close()
        except SaslAuthenticationFailed:
            raise CredentialsError(
                f"kafka: {self.bootstrap_servers} refused the login of user {user!r} "
                f"({self.options.get('sasl_mechanism')}); check kafka.security.username and "
                "kafka.security.password"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise CredentialsError(
                f"kafka: the certificate of {self.bootstrap_servers} cannot be verified "
                f"({exc.verify_message}); check kafka.security.ca"
            ) from None
        except (KafkaError, OSError, TimeoutError):
            return  # not reachable (yet): the roles wait or queue, as without security


class CredentialsError(AdapterError):
    """The broker refused who we are (or we refused its certificate): exit 1, no retry."""


Connection = KafkaConnection | str
"""A :class:`KafkaConnection`, or a bare ``host:port`` list (plaintext, no options)."""


def connection(value: Connection) -> KafkaConnection:
    """``value`` as a :class:`KafkaConnection`."""
    return value if isinstance(value, KafkaConnection) else KafkaConnection(value)


def security_options(security: KafkaSecurity) -> dict[str, Any]:
    """aiokafka client options for ``kafka.security`` (none for plaintext)."""
    if security.protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.tls:
        options["ssl_context"] = client_context(security, "kafka.security")
    if security.protocol.startswith("SASL_"):
        assert security.password is not None  # the config requires it with SASL
        options |= {
            "sasl_mechanism": security.sasl_mechanism,
            "sasl_plain_username": security.username,
            "sasl_plain_password": security.password.get_secret_value(),
        }
    return options
