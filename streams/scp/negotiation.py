"""Presentation contexts the SCP supports and how it picks a transfer syntax.

Every storage SOP class pynetdicom knows (plus Verification) is supported with every
transfer syntax pynetdicom or pydicom knows, compressed ones included (reference
pitfall 3: ``add_supported_context`` defaults to the 4 uncompressed syntaxes).

pynetdicom picks, per proposed context, the first transfer syntax *in the acceptor's
list* that was proposed. To accept what the peer prefers (PS3.8 §9.3.2.2: the proposal
lists syntaxes in order of preference; Clara accepts the first one) the acceptor's
list for each proposed abstract syntax is re-ordered into the peer's order before
negotiation — on the per-association copy, so other associations are unaffected.
Nothing is ever transcoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom._uid_dict import UID_dictionary
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
from pynetdicom.presentation import PresentationContext

VERIFICATION = "1.2.840.10008.1.1"

#: Transfer syntaxes offered on every context: pynetdicom's list, then pydicom's extras.
TRANSFER_SYNTAXES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *ALL_TRANSFER_SYNTAXES,
            *(uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"),
        ]
    )
)

#: Abstract syntaxes served: Verification and every storage SOP class pynetdicom knows.
ABSTRACT_SYNTAXES: tuple[str, ...] = (
    VERIFICATION,
    *(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts),
)
#: The storage SOP classes among them: what C-STORE and STOW-RS accept.
STORAGE_CLASSES: frozenset[str] = frozenset(ABSTRACT_SYNTAXES) - {VERIFICATION}


class SupportedContext(PresentationContext):
    """A supported presentation context that copies cheaply and can be re-ordered.

    pynetdicom deep-copies the server's contexts for every association; with 171
    contexts x 63 transfer syntaxes a real deepcopy (UIDs are ``str`` subclasses)
    costs ~80 ms of CPU per association. Every attribute is an immutable scalar or
    UID except the transfer-syntax list, so copying that list is a faithful copy.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SupportedContext:
        clone = SupportedContext.__new__(SupportedContext)
        clone.__dict__.update(self.__dict__)
        clone._transfer_syntax = list(self._transfer_syntax)
        return clone

    def prefer(self, proposed: Iterable[str]) -> None:
        """Move the ``proposed`` syntaxes (that are supported) to the front, in order."""
        current = {str(ts): ts for ts in self._transfer_syntax}
        front = [current[p] for p in dict.fromkeys(str(p) for p in proposed) if p in current]
        chosen = {str(ts) for ts in front}
        self._transfer_syntax = front + [
            ts for ts in self._transfer_syntax if str(ts) not in chosen
        ]


def supported_contexts() -> list[SupportedContext]:
    """Verification and every storage SOP class, each with :data:`TRANSFER_SYNTAXES`."""
    contexts = []
    for uid in ABSTRACT_SYNTAXES:
        cx = SupportedContext()
        cx.abstract_syntax = uid
        cx.transfer_syntax = list(TRANSFER_SYNTAXES)
        contexts.append(cx)
    return contexts


def prefer_proposed_order(assoc: Any) -> None:
    """Re-order this association's supported contexts into the requestor's preference.

    Call from ``EVT_REQUESTED`` (before negotiation). Proposals of several contexts with
    the same abstract syntax are concatenated, so each context gets its own first
    choice unless an earlier context ranked the same syntaxes differently.
    """
    proposed: dict[str, list[str]] = {}
    for rq in assoc.requestor.primitive.presentation_context_definition_list:
        proposed.setdefault(str(rq.abstract_syntax), []).extend(
            str(ts) for ts in rq.transfer_syntax
        )
    for cx in assoc.acceptor.supported_contexts:
        order = proposed.get(str(cx.abstract_syntax))
        if order and isinstance(cx, SupportedContext):
            cx.prefer(order)
