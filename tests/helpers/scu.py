"""A pynetdicom storage SCU for tests (lets a test send odd UIDs DCMTK would refuse)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AssocResult:
    """How an association attempt ended (reject fields are 0 when not rejected)."""

    established: bool
    rejected: bool
    result: int = 0
    source: int = 0
    diagnostic: int = 0
    reason: str = ""


def _requestor(aet: str) -> AE:
    ae = AE(ae_title=aet)
    ae.acse_timeout = 10
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    return ae


def associate(
    port: int,
    *,
    aec: str,
    aet: str = "PYNSCU",
    contexts: Iterable[tuple[str, str | list[str]]] = (),
) -> tuple[AE, Any, AssocResult]:
    """Open an association; returns (ae, assoc, result). Caller releases it.

    ``contexts`` are (abstract syntax, transfer syntax or list in order of preference).
    """
    ae = _requestor(aet)
    wanted: list[tuple[str, str | list[str]]] = list(contexts) or [
        (Verification, "1.2.840.10008.1.2.1")
    ]
    for abstract, ts in wanted:
        ae.add_requested_context(abstract, ts)
    assoc = ae.associate("127.0.0.1", port, ae_title=aec)
    if assoc.is_established:
        return ae, assoc, AssocResult(established=True, rejected=False)
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        return (
            ae,
            assoc,
            AssocResult(
                established=False,
                rejected=True,
                result=rsp.result,
                source=rsp.result_source,
                diagnostic=rsp.diagnostic,
                reason=str(rsp.reason_str),
            ),
        )
    return ae, assoc, AssocResult(established=False, rejected=False)


def echo(port: int, *, aec: str, aet: str = "PYNSCU") -> tuple[AssocResult, int | None]:
    """C-ECHO over a fresh association; (association result, status or None)."""
    _, assoc, result = associate(port, aec=aec, aet=aet)
    if not result.established:
        return result, None
    status = assoc.send_c_echo()
    assoc.release()
    return result, int(status.Status) if status else None


def store(
    port: int,
    datasets: list[Dataset],
    *,
    aec: str,
    aet: str = "PYNSCU",
) -> tuple[AssocResult, list[int | None]]:
    """C-STORE each dataset on one association; statuses in order (None = no response)."""
    contexts = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
    _, assoc, result = associate(port, aec=aec, aet=aet, contexts=sorted(contexts))
    if not result.established:
        return result, []
    statuses: list[int | None] = []
    for ds in datasets:
        rsp = assoc.send_c_store(ds)
        statuses.append(int(rsp.Status) if rsp and "Status" in rsp else None)
    assoc.release()
    return result, statuses


__all__ = ["AssocResult", "associate", "build_context", "echo", "store"]
