"""The one frozen settings object of a process (DESIGN.md §3.2, STYLE.md §11).

Every model forbids unknown keys, so a typo is an error that names the key rather than
a silently ignored setting. ``processorSettings`` stays a plain mapping here: its keys
belong to the job processor (``processors/``), which validates them — ``streams`` never
imports ``processors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_core import InitErrorDetails

from streams.config.base import (
    AeTitle,
    Float,
    Hours,
    Int,
    NonEmptyStr,
    Port,
    StrictModel,
    check_backoff,
    duplicates,
    problem,
    validate_with,
)
from streams.config.export import DicomDestination, ExportConfig
from streams.config.fields import (
    check_adapter_id,
    check_bootstrap_servers,
    check_http_url,
    check_topic_prefix,
    mask_url,
)
from streams.config.security import (
    HttpAuth,
    KafkaSecurity,
    ScpTls,
    SecurityConfig,
    TlsServer,
    check_secret_length,
    secret_from_file,
)

DEFAULT_PROCESSOR = "aetitle"
#: Our AE title towards an export destination when nothing else names one.
DEFAULT_CALLING_AE = "DICOMADAPTER"


def _check_min_insync(value: dict[str, Any], extra: list[InitErrorDetails]) -> None:
    isr, replicas = value.get("min_insync_replicas"), value.get("replication_factor", 1)
    numbers = isinstance(isr, int) and isinstance(replicas, int) and not isinstance(isr, bool)
    if numbers and isr > replicas:
        extra.append(
            problem(
                ("min_insync_replicas",),
                isr,
                f"is {isr}, more than replication_factor ({replicas}), so no write could "
                f"ever be acknowledged; use at most {replicas}",
            )
        )


class TopicRetention(StrictModel):
    """``retention.ms`` of the adapter's log topics, in hours or ``never`` (unlimited).

    The instances topic only needs to outlive open windows and outages (default 30
    days); the jobs and exports topics are ledgers -- job history, exactly-once state,
    dead letters waiting for an operator -- kept without limit by default.
    """

    instances_hours: Hours = 720.0
    jobs_hours: Hours = None
    exports_hours: Hours = None


class KafkaConfig(StrictModel):
    """Where events go. No ``bootstrap_servers`` means: start the embedded broker."""

    bootstrap_servers: Annotated[str, AfterValidator(check_bootstrap_servers)] | None = None
    topic_prefix: Annotated[str, AfterValidator(check_topic_prefix)] = "dicom"
    partitions: Int = Field(default=12, ge=1)
    replication_factor: Int = Field(default=1, ge=1)
    #: ``min.insync.replicas`` of replicated topics (None: replication_factor - 1, at most 2).
    min_insync_replicas: Int | None = Field(default=None, ge=1)
    retention: TopicRetention = Field(default_factory=TopicRetention)
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    #: HMAC key of the record keys (streams/events/keys.py); the same on every adapter
    #: of a bus. None: the public lab secret.
    key_secret: SecretStr | None = None
    key_secret_file: Path | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _key_secret(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            value = dict(value)
            secret_from_file(value, "key_secret", extra)
            what = "secret, the same on every adapter of the bus"
            check_secret_length(value.get("key_secret"), ("key_secret",), extra, what)
            _check_min_insync(value, extra)
        return validate_with(handler, value, extra, cls.__name__)

    def record_key_secret(self) -> bytes | None:
        """The configured key secret as bytes (``None``: not configured)."""
        if self.key_secret is None:
            return None
        return self.key_secret.get_secret_value().encode("utf-8")

    @property
    def instances_topic(self) -> str:
        """``<prefix>.instances`` (DESIGN.md §3.3)."""
        return f"{self.topic_prefix}.instances"

    @property
    def jobs_topic(self) -> str:
        """``<prefix>.jobs`` (DESIGN.md §3.3)."""
        return f"{self.topic_prefix}.jobs"


class SourceAe(StrictModel):
    """A calling AE allowed to send; ``host`` (IP or name) restricts where from."""

    ae_title: AeTitle
    host: NonEmptyStr | None = None


class AeTitleConfig(StrictModel):
    """One called AE title of the SCP and the job processor that handles its instances."""

    ae_title: AeTitle
    processor: NonEmptyStr = DEFAULT_PROCESSOR
    processor_settings: dict[str, Any] = Field(default_factory=dict, alias="processorSettings")
    overwrite_same_instance: bool = True
    ignored_sop_classes: tuple[NonEmptyStr, ...] = ()


class ScpConfig(StrictModel):
    """The DICOM C-STORE receiver (PS3.4 Annex B) and its storage guard."""

    host: NonEmptyStr = "0.0.0.0"
    #: The plain (unencrypted) DICOM port; ``None`` for TLS only.
    port: Port | None = 11112
    #: The DICOM TLS listener (PS3.15 Annex B); ``None``: none.
    tls: ScpTls | None = None
    max_associations: Int = Field(default=25, ge=1, le=1000)
    max_pdu: Int = Field(default=0, ge=0)  # 0 = unlimited
    reject_unknown_sources: bool = False
    sources: tuple[SourceAe, ...] = ()
    ae_titles: tuple[AeTitleConfig, ...] = ()
    watermark_percent: Int = Field(default=85, ge=1, le=100)
    reserve_space_gb: Float = Field(default=5.0, ge=0)
    #: ARTIM / ACSE timeout (PS3.8 §9.1.5): how long a connection may take to send its
    #: A-ASSOCIATE-RQ (or a release reply) before the SCP closes it and frees its slot.
    acse_timeout_s: Float = Field(default=30.0, gt=0, le=3600)
    #: How long an association may stay silent (and a PDU may stall) before it is aborted.
    network_timeout_s: Float = Field(default=60.0, gt=0, le=86400)
    #: How often the SCP says on ``<prefix>.sources`` what it still owes the bus (the
    #: oldest instance not acknowledged by Kafka); processors close no group it may add to.
    heartbeat_interval_ms: Int = Field(default=250, ge=20, le=60_000)

    @field_validator("ae_titles", mode="wrap")
    @classmethod
    def _unique_ae_titles(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra = duplicates(value, "ae_title", "AE titles", "scp.ae_titles")
        return validate_with(handler, value, extra, cls.__name__)

    @field_validator("sources", mode="wrap")
    @classmethod
    def _unique_sources(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra = duplicates(value, "ae_title", "source AE titles", "scp.sources")
        return validate_with(handler, value, extra, cls.__name__)

    @model_validator(mode="wrap")
    @classmethod
    def _sources_when_required(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        no_listener = isinstance(value, dict) and "port" in value and value["port"] is None
        if no_listener and value.get("tls") is None:
            extra.append(
                problem(
                    ("port",),
                    None,
                    "is null and scp.tls is not set, so the SCP would not listen at all; "
                    "set a port, or configure scp.tls",
                )
            )
        required = isinstance(value, dict) and value.get("reject_unknown_sources") is True
        if required and not value.get("sources"):
            extra.append(
                problem(
                    ("reject_unknown_sources",),
                    True,
                    "is true but scp.sources is empty, so every association would be "
                    "rejected; list the allowed senders under scp.sources or set it false",
                )
            )
        return validate_with(handler, value, extra, cls.__name__)

    def reserved_bytes(self, total_bytes: int) -> int:
        """Free space the SCP keeps: ``max(total x (1 - watermark), reserve_space_gb)``.

        As Clara's ``StorageInfoProvider``: storing is refused (0xA700) unless free space
        is strictly greater than this.
        """
        by_watermark = int(total_bytes * (1 - self.watermark_percent / 100))
        return max(by_watermark, int(self.reserve_space_gb * 1e9))


class ProcessorRuntimeConfig(StrictModel):
    """Runtime knobs of the job processors (windows are defined per AE title).

    Time is the bus's (docs/processing.md, "Time"): ``grace_ms`` is subtracted from the
    bus watermark (publish-latency jitter between a source's heartbeat and its records);
    a source silent for ``source_idle_timeout_s`` is declared lost and holds nothing
    back any more; ``tick_keepalive_ms`` and ``tick_horizon_s``: while a partition saw
    an instance within the horizon, a ``clock.tick`` is written at least that often, so
    replays with longer timeouts still find the clock moving.
    """

    grace_ms: Int = Field(default=200, ge=0)
    source_idle_timeout_s: Float = Field(default=60.0, gt=0, le=86400)
    tick_keepalive_ms: Int = Field(default=5000, ge=100)
    tick_horizon_s: Float = Field(default=600.0, ge=0)
    commit_interval_ms: Int = Field(default=1000, ge=1)
    batch_max_records: Int = Field(default=500, ge=1)


class SubmitterConfig(StrictModel):
    """How closed groups become pipeline jobs: the jobs topic alone, or an HTTP platform."""

    kind: Literal["kafka", "http"] = "kafka"
    url: Annotated[str, AfterValidator(check_http_url)] | None = None
    max_attempts: Int = Field(default=5, ge=1)
    backoff_initial_s: Float = Field(default=1.0, gt=0)
    backoff_max_s: Float = Field(default=60.0, gt=0)
    timeout_s: Float = Field(default=30.0, gt=0)
    #: Hours a submitted job's payload is kept; 0 removes it once the group's jobs are
    #: all submitted, ``None`` (``never``) keeps it until an operator deletes it.
    payload_retention_hours: Hours = 24.0
    #: Hours after which an instance file that no event announces is removed (``never``:
    #: never swept); see processors/reclaim/orphans.py.
    orphan_grace_hours: Hours = 1.0

    @model_validator(mode="wrap")
    @classmethod
    def _url_for_http(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            if value.get("kind") == "http" and value.get("url") is None:
                extra.append(
                    problem(
                        ("url",),
                        None,
                        "is required when kind is http; set it to the platform's job "
                        "endpoint, e.g. http://platform:8080/jobs",
                    )
                )
            check_backoff(value, extra)
        return validate_with(handler, value, extra, cls.__name__)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" and isinstance(value, str) else value)


class HttpConfig(StrictModel):
    """The HTTP endpoint (probes, metrics, APIs); ``port: 0`` disables it.

    Every route but ``/healthz``, ``/readyz`` and ``/metrics`` needs a token from
    ``auth`` or a verified client certificate (``tls.ca``); see docs/security.md.
    """

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8080
    tls: TlsServer | None = None
    auth: HttpAuth = Field(default_factory=HttpAuth)


class AdapterConfig(StrictModel):
    """Everything one adapter process needs; built once by :func:`load_config`."""

    adapter_id: Annotated[str, AfterValidator(check_adapter_id)] = "adapter-1"
    storage: Path = Path("data")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    scp: ScpConfig = Field(default_factory=ScpConfig)
    processor: ProcessorRuntimeConfig = Field(default_factory=ProcessorRuntimeConfig)
    submitter: SubmitterConfig = Field(default_factory=SubmitterConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    @field_validator("storage", mode="before")
    @classmethod
    def _storage_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; use a directory such as ./data")
        return value

    def with_kafka(self, bootstrap_servers: str) -> AdapterConfig:
        """This config with ``kafka.bootstrap_servers`` set (``--kafka``, the embedded
        broker): the one place a process keeps the broker address."""
        kafka = self.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
        return self.model_copy(update={"kafka": kafka})

    def calling_ae(self, destination: DicomDestination) -> str:
        """Our AE title towards a DICOM destination: its ``calling_ae``, else the first
        ``scp.ae_titles`` entry (the adapter's own AE), else ``DICOMADAPTER``."""
        if destination.calling_ae:
            return destination.calling_ae
        if self.scp.ae_titles:
            return self.scp.ae_titles[0].ae_title
        return DEFAULT_CALLING_AE

    def ae_title(self, ae_title: str) -> AeTitleConfig | None:
        """The configuration of one called AE title (exact, case-sensitive), if any."""
        for entry in self.scp.ae_titles:
            if entry.ae_title == ae_title:
                return entry
        return None
