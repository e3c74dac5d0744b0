"""The secure mode of the embedded Kafka broker: TLS, SCRAM-SHA-512 users and ACLs.

For tests and labs (``dicom-adapter broker start --secure``), never production. Clients
reach one ``SASL_SSL`` listener with a certificate from a local CA
(:mod:`streams.broker.certs`) and log in with SCRAM-SHA-512; the users are made when
the storage is formatted (KRaft keeps SCRAM credentials in its metadata log) with
random passwords kept in ``<data>/security/users.json`` (mode 0600), so a restart of
the same data folder keeps them. ``admin`` is a super user; every other user may do
only what the ACLs give it (StandardAuthorizer, nothing allowed without an ACL):
:func:`streams.kafka.acls.role_acls`. The controller listener stays PLAINTEXT on
loopback (SCRAM cannot authenticate a KRaft controller: its credentials live in the
log the controller serves).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiokafka.protocol.admin import CreateAclsRequest

from streams.broker.certs import LocalCa
from streams.config.security import KafkaSecurity
from streams.kafka.acls import ROLES, Acl
from streams.kafka.clients import KafkaConnection, security_options

MECHANISM: Final = "SCRAM-SHA-512"
ADMIN = "admin"
#: Users made by default: the super user and one per role (``cli``: events and jobs).
USERS: tuple[str, ...] = (ADMIN, *ROLES)

# Kafka's wire enums (org.apache.kafka.common.acl / resource).
_RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {
    "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
    "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12,
}  # fmt: skip
_ALLOW = 3


@dataclass(frozen=True, slots=True)
class SecureBroker:
    """The files and users of a secure broker's data folder."""

    folder: Path
    ca: Path
    keystore: Path
    users: Mapping[str, str] = field(repr=False)

    @classmethod
    def prepare(
        cls, folder: Path, hosts: Sequence[str], users: Iterable[str] = USERS
    ) -> SecureBroker:
        """Make (or load) the CA, the broker's certificate for ``hosts`` and the users."""
        folder.mkdir(parents=True, exist_ok=True)
        ca = LocalCa(folder, "broker")
        issued = ca.issue("dicom-adapter-broker", hosts=hosts, file_stem="broker")
        users_path = folder / "users.json"
        known: dict[str, str] = {}
        if users_path.is_file():
            known = dict(json.loads(users_path.read_text(encoding="utf-8")))
        for name in users:
            known.setdefault(name, secrets.token_hex(16))
        fd = os.open(users_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(known, out, indent=2)
        return cls(folder, ca.cert_path, issued.pem, known)

    def properties(self, listener: str) -> dict[str, str]:
        """``server.properties`` entries for the ``SASL_SSL`` listener named ``listener``."""
        name = listener.lower()
        admin = self.users[ADMIN]
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.{name}.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN}" password="{admin}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
            "ssl.endpoint.identification.algorithm": "",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The broker reaches its own controller over the loopback PLAINTEXT listener.
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users."""
        out: list[str] = []
        for name, password in self.users.items():
            out += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return out

    def security(self, user: str) -> KafkaSecurity:
        """``kafka.security`` for a client logging in as ``user``."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            username=user,
            password=self.users[user],  # type: ignore[arg-type]
            ca=self.ca,
        )

    def connection(self, bootstrap: str, user: str = ADMIN) -> KafkaConnection:
        """A connection to the broker as ``user``."""
        return KafkaConnection(bootstrap, security_options(self.security(user)))


async def grant(connection: KafkaConnection, user: str, acls: Iterable[Acl]) -> None:
    """Create ``acls`` for ``user`` (CreateAcls; aiokafka's admin client has no call for
    it, so its request type is sent directly). Raises ``RuntimeError`` on a refusal."""
    admin = connection.admin(client_id="dicom-adapter-acls")
    await admin.start()
    try:
        for acl in acls:
            for operation in acl.operations:
                request: Any = CreateAclsRequest(
                    _RESOURCE[acl.resource],
                    acl.name,
                    _PATTERN[acl.pattern],
                    f"User:{user}",
                    "*",
                    _OPERATION[operation],
                    _ALLOW,
                )
                response = await admin._send_request(request)
                for error in response.creation_responses:
                    if error[0] != 0:
                        raise RuntimeError(f"CreateAcls {acl} {operation} for {user}: {error}")
    finally:
        await admin.close()
