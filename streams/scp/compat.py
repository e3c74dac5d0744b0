"""The pynetdicom versions the SCP is tested against, and the guard that enforces them.

The SCP's receive path reaches into pynetdicom where it has no public hook: the fast
C-STORE path (:mod:`streams.scp.fastpath`), the hardened DUL (:mod:`streams.scp.dul`),
the server (:mod:`streams.scp.server`), socket tuning (:mod:`streams.scp.tcp`) and the
negotiation order (:mod:`streams.scp.negotiation`) use the private names in
:data:`PYNETDICOM_INTERNALS` and override ``run_reactor``, ``receive_pdu`` and
``StateMachine.do_action``, whose behaviour pynetdicom does not promise to keep. A
release that changes them need not raise anything: the reactor could stop reading, or a
response never be sent. So the SCP refuses to start on a version outside
:data:`TESTED_PYNETDICOM`, with one line that says how to fix it.

Falling back to pynetdicom's own receive path instead was weighed and left out: every
one of those modules would need switching off, not the fast path alone (the hardened
DUL, the request handler and the socket patches rely on internals too), the SCP would
then run without the fixes the port fuzz found, and the fallback would be a second
receive path to test. ``pyproject.toml`` pins the same range, so only an environment
that overrides the pin meets the guard.
"""

from __future__ import annotations

import re

import pynetdicom

from streams.errors import AdapterError

#: pynetdicom releases the SCP is tested with: at least the first, below the second.
#: Widen it only after tests/integration/test_scp_*.py pass on the new release.
TESTED_PYNETDICOM: tuple[str, str] = ("3.0.4", "3.1")

#: Private pynetdicom names the SCP relies on, as (module, class, attribute).
PYNETDICOM_INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("pynetdicom.dul", "DULServiceProvider", "_read_pdu_data"),
    ("pynetdicom.dul", "DULServiceProvider", "_decode_pdu"),
    ("pynetdicom.dul", "DULServiceProvider", "_is_transport_event"),
    ("pynetdicom.dul", "DULServiceProvider", "_recv_pdu"),
    ("pynetdicom.dul", "DULServiceProvider", "_send"),
    ("pynetdicom.dul", "DULServiceProvider", "_run_loop_delay"),
    ("pynetdicom.timer", "Timer", "_start_time"),
    ("pynetdicom.timer", "Timer", "_end_time"),
    ("pynetdicom.association", "Association", "_accepted_cx"),
    ("pynetdicom.association", "Association", "_kill"),
    ("pynetdicom.ae", "ApplicationEntity", "_servers"),
    ("pynetdicom.transport", "RequestHandler", "_create_association"),
    ("pynetdicom.transport", "AssociationSocket", "_shutdown_socket"),
    ("pynetdicom.presentation", "PresentationContext", "_transfer_syntax"),
)


class UntestedPynetdicomError(AdapterError):
    """The installed pynetdicom is outside :data:`TESTED_PYNETDICOM` (no retry helps)."""


def requirement() -> str:
    """The tested range as a requirement: ``pynetdicom>=3.0.4,<3.1``."""
    low, high = TESTED_PYNETDICOM
    return f"pynetdicom>={low},<{high}"


def installed_pynetdicom() -> str:
    """The version of the pynetdicom that is imported."""
    return str(pynetdicom.__version__)


def _release(version: str) -> tuple[int, ...]:
    """``"3.0.4"`` → ``(3, 0, 4)``; a suffix (``rc1``, ``.dev0``) is ignored."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        return ()
    return tuple(int(part) for part in match.group().split("."))


def is_tested(version: str) -> bool:
    """Whether ``version`` lies in :data:`TESTED_PYNETDICOM`."""
    low, high = TESTED_PYNETDICOM
    release = _release(version)
    return bool(release) and _release(low) <= release < _release(high)


def internals() -> str:
    """:data:`PYNETDICOM_INTERNALS` as ``Class.attribute`` names, comma-separated."""
    return ", ".join(f"{cls}.{attr}" for _, cls, attr in PYNETDICOM_INTERNALS)


def require_tested_pynetdicom(version: str | None = None) -> None:
    """Raise :class:`UntestedPynetdicomError` unless ``version`` (default: the installed
    one) is tested; the message is one line saying how to fix it."""
    found = installed_pynetdicom() if version is None else version
    if not is_tested(found):
        raise UntestedPynetdicomError(
            f"pynetdicom {found} is untested with this SCP, which relies on pynetdicom "
            f"internals; install a tested release (pip install '{requirement()}'), or run "
            "tests/integration/test_scp_*.py on it and widen TESTED_PYNETDICOM in "
            "streams/scp/compat.py"
        )


__all__ = [
    "PYNETDICOM_INTERNALS",
    "TESTED_PYNETDICOM",
    "UntestedPynetdicomError",
    "installed_pynetdicom",
    "internals",
    "is_tested",
    "require_tested_pynetdicom",
    "requirement",
]
