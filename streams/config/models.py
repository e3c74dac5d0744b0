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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from streams.config.fields import (
    check_adapter_id,
    check_ae_title,
    check_bootstrap_servers,
    check_http_url,
    check_topic_prefix,
    mask_url,
)


def _not_bool(value: Any) -> Any:
    # Lax pydantic reads true as 1; "port: yes" is a mistake, not a port.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean; use a number")
    return value


AeTitle = Annotated[str, AfterValidator(check_ae_title)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Port = Annotated[Int, Field(ge=0, le=65535)]

DEFAULT_PROCESSOR = "aetitle"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _problem(loc: tuple[str | int, ...], value: Any, message: str) -> InitErrorDetails:
    # No context is passed, so braces in user values are never taken for template fields.
    return InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=value)


def _validate_with(
    handler: Callable[[Any], Any], value: Any, extra: list[InitErrorDetails], title: str
) -> Any:
    """Run pydantic's own validation and add ``extra`` problems, so all come out at once."""
    try:
        result = handler(value)
    except ValidationError as exc:
        if not extra:
            raise
        raise ValidationError.from_exception_data(exc.title, [*_as_details(exc), *extra]) from None
    if extra:
        raise ValidationError.from_exception_data(title, extra)
    return result


def _as_details(exc: ValidationError) -> list[InitErrorDetails]:
    """Re-raisable copies of pydantic's errors that keep ``type`` and ``ctx`` for the
    formatter (our own ``config`` problems keep their message)."""
    out: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "config":
            out.append(_problem(loc, err["input"], err["msg"]))
            continue
        detail = InitErrorDetails(type=err["type"], loc=loc, input=err["input"])
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        out.append(detail)
    return out


def _duplicates(items: Any, key: str, what: str, prefix: str) -> list[InitErrorDetails]:
    """One problem per repeated ``key`` value in a raw list of mappings (case-sensitive)."""
    if not isinstance(items, Iterable) or isinstance(items, str | bytes | dict):
        return []
    seen: dict[str, int] = {}
    out: list[InitErrorDetails] = []
    for index, item in enumerate(items):
        value = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
        if not isinstance(value, str):
            continue
        if value in seen:
            out.append(
                _problem(
                    (index, key),
                    value,
                    f"{value!r} is already used by {prefix}[{seen[value]}]; {what} must be "
                    "unique (case-sensitive), remove or rename one",
                )
            )
        else:
            seen[value] = index
    return out


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


class KafkaConfig(_Model):
    """Where events go. No ``bootstrap_servers`` means: start the embedded broker."""

    bootstrap_servers: Annotated[str, AfterValidator(check_bootstrap_servers)] | None = None
    topic_prefix: Annotated[str, AfterValidator(check_topic_prefix)] = "dicom"
    partitions: Int = Field(default=12, ge=1)
    replication_factor: Int = Field(default=1, ge=1)

    @property
    def instances_topic(self) -> str:
        """``<prefix>.instances`` (DESIGN.md §3.3)."""
        return f"{self.topic_prefix}.instances"

    @property
    def jobs_topic(self) -> str:
        """``<prefix>.jobs`` (DESIGN.md §3.3)."""
        return f"{self.topic_prefix}.jobs"


class SourceAe(_Model):
    """A calling AE allowed to send; ``host`` (IP or name) restricts where from."""

    ae_title: AeTitle
    host: NonEmptyStr | None = None


class AeTitleConfig(_Model):
    """One called AE title of the SCP and the job processor that handles its instances."""

    ae_title: AeTitle
    processor: NonEmptyStr = DEFAULT_PROCESSOR
    processor_settings: dict[str, Any] = Field(default_factory=dict, alias="processorSettings")
    overwrite_same_instance: bool = True
    ignored_sop_classes: tuple[NonEmptyStr, ...] = ()


class ScpConfig(_Model):
    """The DICOM C-STORE receiver (PS3.4 Annex B) and its storage guard."""

    host: NonEmptyStr = "0.0.0.0"
    port: Port = 11112
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

    @field_validator("ae_titles", mode="wrap")
    @classmethod
    def _unique_ae_titles(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra = _duplicates(value, "ae_title", "AE titles", "scp.ae_titles")
        return _validate_with(handler, value, extra, cls.__name__)

    @field_validator("sources", mode="wrap")
    @classmethod
    def _unique_sources(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra = _duplicates(value, "ae_title", "source AE titles", "scp.sources")
        return _validate_with(handler, value, extra, cls.__name__)

    @model_validator(mode="wrap")
    @classmethod
    def _sources_when_required(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        required = isinstance(value, dict) and value.get("reject_unknown_sources") is True
        if required and not value.get("sources"):
            extra.append(
                _problem(
                    ("reject_unknown_sources",),
                    True,
                    "is true but scp.sources is empty, so every association would be "
                    "rejected; list the allowed senders under scp.sources or set it false",
                )
            )
        return _validate_with(handler, value, extra, cls.__name__)

    def reserved_bytes(self, total_bytes: int) -> int:
        """Free space the SCP keeps: ``max(total x (1 - watermark), reserve_space_gb)``.

        As Clara's ``StorageInfoProvider``: storing is refused (0xA700) unless free space
        is strictly greater than this.
        """
        by_watermark = int(total_bytes * (1 - self.watermark_percent / 100))
        return max(by_watermark, int(self.reserve_space_gb * 1e9))


class ProcessorRuntimeConfig(_Model):
    """Runtime knobs of the job processors (windows are defined per AE title)."""

    grace_ms: Int = Field(default=1000, ge=0)
    commit_interval_ms: Int = Field(default=1000, ge=1)
    batch_max_records: Int = Field(default=500, ge=1)


class SubmitterConfig(_Model):
    """How closed groups become pipeline jobs: the jobs topic alone, or an HTTP platform."""

    kind: Literal["kafka", "http"] = "kafka"
    url: Annotated[str, AfterValidator(check_http_url)] | None = None
    max_attempts: Int = Field(default=5, ge=1)
    backoff_initial_s: Float = Field(default=1.0, gt=0)
    backoff_max_s: Float = Field(default=60.0, gt=0)
    timeout_s: Float = Field(default=30.0, gt=0)
    payload_retention_hours: Float = Field(default=0.0, ge=0)

    @model_validator(mode="wrap")
    @classmethod
    def _url_for_http(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            if value.get("kind") == "http" and value.get("url") is None:
                extra.append(
                    _problem(
                        ("url",),
                        None,
                        "is required when kind is http; set it to the platform's job "
                        "endpoint, e.g. http://platform:8080/jobs",
                    )
                )
            low, high = value.get("backoff_initial_s", 1.0), value.get("backoff_max_s", 60.0)
            if _numbers(low, high) and low > high:
                extra.append(
                    _problem(
                        ("backoff_max_s",),
                        high,
                        f"{high} is below backoff_initial_s ({low}); make it at least that",
                    )
                )
        return _validate_with(handler, value, extra, cls.__name__)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" and isinstance(value, str) else value)


class HttpConfig(_Model):
    """The health/metrics HTTP endpoint; ``port: 0`` disables it."""

    host: NonEmptyStr = "0.0.0.0"
    port: Port = 8080


class AdapterConfig(_Model):
    """Everything one adapter process needs; built once by :func:`load_config`."""

    adapter_id: Annotated[str, AfterValidator(check_adapter_id)] = "adapter-1"
    storage: Path = Path("data")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    scp: ScpConfig = Field(default_factory=ScpConfig)
    processor: ProcessorRuntimeConfig = Field(default_factory=ProcessorRuntimeConfig)
    submitter: SubmitterConfig = Field(default_factory=SubmitterConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)

    @field_validator("storage", mode="before")
    @classmethod
    def _storage_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; use a directory such as ./data")
        return value

    def ae_title(self, ae_title: str) -> AeTitleConfig | None:
        """The configuration of one called AE title (exact, case-sensitive), if any."""
        for entry in self.scp.ae_titles:
            if entry.ae_title == ae_title:
                return entry
        return None
