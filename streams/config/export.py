"""Where results go back to: export destinations (DICOM C-STORE or DICOMweb STOW-RS)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_core import InitErrorDetails

from streams.config.base import (
    AeTitle,
    Float,
    Int,
    NonEmptyStr,
    StrictModel,
    check_backoff,
    duplicates,
    problem,
    validate_with,
)
from streams.config.fields import check_destination_name, check_http_url, mask_url
from streams.config.security import TlsClient

DestinationName = Annotated[str, AfterValidator(check_destination_name)]
Timeout = Annotated[Float, Field(gt=0, le=3600)]


class DicomDestination(StrictModel):
    """A DICOM peer that exports reach with C-STORE (PS3.4 Annex B), one association per
    batch. ``calling_ae`` defaults to the adapter's first SCP AE title (see
    :meth:`AdapterConfig.calling_ae`)."""

    kind: Literal["dicom"]
    name: DestinationName
    ae_title: AeTitle
    host: NonEmptyStr
    port: Annotated[Int, Field(ge=1, le=65535)]
    calling_ae: AeTitle | None = None
    timeout_s: Timeout = 30.0
    #: DICOM over TLS to the peer (PS3.15 Annex B.1); ``{}`` trusts the system's CAs.
    tls: TlsClient | None = None


class DicomWebAuth(StrictModel):
    """How to authenticate to a DICOMweb server; secrets are masked in ``repr``."""

    kind: Literal["none", "basic", "bearer"] = "none"
    username: NonEmptyStr | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _fields_of_kind(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            kind = value.get("kind", "none")
            needs = {"basic": ("username", "password"), "bearer": ("token",)}.get(kind, ())
            for key in needs:
                if value.get(key) in (None, ""):
                    extra.append(problem((key,), None, f"is required when kind is {kind}; set it"))
            if kind in ("none", "basic", "bearer"):
                for key in ("username", "password", "token"):
                    if key not in needs and value.get(key) is not None:
                        used = "basic" if key != "token" else "bearer"
                        extra.append(
                            problem(
                                (key,),
                                "***",
                                f"is only used when kind is {used}; remove it or set kind: {used}",
                            )
                        )
        return validate_with(handler, value, extra, cls.__name__)


class DicomWebDestination(StrictModel):
    """A DICOMweb server that exports reach with STOW-RS (PS3.18 §10.5); ``url`` is its
    base (``.../dicom-web``), credentials in it are masked in ``repr``."""

    kind: Literal["dicomweb"]
    name: DestinationName
    url: Annotated[str, AfterValidator(check_http_url)]
    auth: DicomWebAuth = Field(default_factory=DicomWebAuth)
    timeout_s: Timeout = 30.0

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" and isinstance(value, str) else value)


ExportDestination = Annotated[DicomDestination | DicomWebDestination, Field(discriminator="kind")]


class ExportConfig(StrictModel):
    """Where the export role sends result files, and how it retries (issue 17)."""

    destinations: tuple[ExportDestination, ...] = ()
    max_attempts: Int = Field(default=5, ge=1)
    backoff_initial_s: Float = Field(default=1.0, gt=0)
    backoff_max_s: Float = Field(default=60.0, gt=0)
    batch_size: Int = Field(default=100, ge=1, le=10000)
    #: Hours the staged files of a dead-lettered request are kept (0: until it is
    #: retried and delivered); a fully delivered request's files go at once.
    retention_hours: Float = Field(default=0.0, ge=0)

    @field_validator("destinations", mode="wrap")
    @classmethod
    def _unique_names(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra = duplicates(value, "name", "destination names", "export.destinations")
        return validate_with(handler, value, extra, cls.__name__)

    @model_validator(mode="wrap")
    @classmethod
    def _backoff(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            check_backoff(value, extra)
        return validate_with(handler, value, extra, cls.__name__)

    def destination(self, name: str) -> DicomDestination | DicomWebDestination | None:
        """The destination called ``name`` (exact, case-sensitive), if any."""
        for entry in self.destinations:
            if entry.name == name:
                return entry
        return None
