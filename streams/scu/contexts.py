"""Presentation contexts a sender proposes, and which one each instance goes out on (pure).

Proposal (PS3.8 §9.3.2.2): for every SOP class of the batch, one context per transfer
syntax its files are in — each with that one syntax, so the answer says exactly which of
them the peer takes — then one fallback context offering Explicit and Implicit VR Little
Endian (those not already proposed on their own). An acceptor picks one syntax per
context, so a context listing several would hide whether the file's own syntax is
accepted.

Choice, mirroring pynetdicom's ``Association._get_valid_context`` (which does the final
selection when the C-STORE is sent): the file's own syntax if a context with it was
accepted; otherwise, for an uncompressed little-endian file, the first accepted
uncompressed little-endian context of its class (pynetdicom re-encodes implicit ↔
explicit, and inflates deflated files, by itself); for a compressed file, decompression
to Explicit VR Little Endian (or the first accepted uncompressed little-endian syntax).
Big-endian files are never converted: pydicom does not byte-swap pixel data when it
re-encodes, so the result would be wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

#: Syntaxes every Storage SCP must support at least one of (PS3.5 §10.1: Implicit VR
#: Little Endian is the default), proposed when the files' own ones are refused.
FALLBACKS: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

#: A requestor proposes at most 128 contexts (odd context ids 1..255, PS3.8 §9.3.2.2).
MAX_CONTEXTS = 128

T = TypeVar("T")

ChoiceKind = Literal["as_is", "convert", "no_context", "cannot_convert"]


@dataclass(frozen=True, slots=True)
class Choice:
    """How one instance is sent: on which syntax, and whether it is converted first."""

    kind: ChoiceKind
    transfer_syntax_uid: str = ""
    decompress: bool = False  # a compressed file that must be decoded first
    why: str = ""  # for ``no_context`` / ``cannot_convert``


def requested_contexts(
    pairs: Iterable[tuple[str, str]],
) -> list[tuple[str, list[str]]]:
    """Contexts to propose for ``(sop_class_uid, transfer_syntax_uid)`` pairs.

    Classes keep the order they first appear in, their syntaxes too; the fallback
    context of a class comes after its own-syntax contexts.
    """
    syntaxes: dict[str, list[str]] = {}
    for sop_class, syntax in pairs:
        own = syntaxes.setdefault(sop_class, [])
        if syntax not in own:
            own.append(syntax)
    out: list[tuple[str, list[str]]] = []
    for sop_class, own in syntaxes.items():
        out.extend((sop_class, [syntax]) for syntax in own)
        fallback = [ts for ts in FALLBACKS if ts not in own]
        if fallback:
            out.append((sop_class, fallback))
    return out


def context_count(pairs: Iterable[tuple[str, str]]) -> int:
    """How many contexts :func:`requested_contexts` proposes for ``pairs``."""
    return len(requested_contexts(pairs))


def split_by_contexts(entries: Sequence[T], key: Callable[[T], tuple[str, str]]) -> list[list[T]]:
    """Cut ``entries`` into groups whose contexts fit in one association.

    ``key`` gives an entry's ``(sop_class_uid, transfer_syntax_uid)``. Entries of one
    SOP class stay in one group (a class never needs more than a few
    contexts); a new group starts when the next class would push the count past
    :data:`MAX_CONTEXTS`. Order inside a group follows ``entries``.
    """
    by_class: dict[str, list[T]] = {}
    for entry in entries:
        by_class.setdefault(key(entry)[0], []).append(entry)
    groups: list[list[T]] = []
    current: list[T] = []
    for members in by_class.values():
        trial = current + members
        if current and context_count(key(e) for e in trial) > MAX_CONTEXTS:
            groups.append(current)
            trial = list(members)
        current = trial
    if current:
        groups.append(current)
    order = {id(entry): n for n, entry in enumerate(entries)}
    return [sorted(group, key=lambda e: order[id(e)]) for group in groups]


def choose(sop_class_uid: str, own_syntax: str, accepted: Sequence[tuple[str, str]]) -> Choice:
    """Which accepted context an instance of ``sop_class_uid`` in ``own_syntax`` uses.

    ``accepted`` lists ``(abstract syntax, transfer syntax)`` of the accepted contexts in
    the order pynetdicom searches them (``Association.accepted_contexts``).
    """
    mine = [ts for cls, ts in accepted if cls == sop_class_uid]
    if not mine:
        return Choice("no_context", why=f"the peer accepted no context for {_name(sop_class_uid)}")
    if own_syntax in mine:
        return Choice("as_is", own_syntax)
    own = UID(own_syntax)
    plain = [ts for ts in mine if not UID(ts).is_compressed and UID(ts).is_little_endian]
    if not own.is_little_endian:
        return Choice(
            "cannot_convert",
            why=f"the peer refused {own.name} for this SOP class and big-endian files are "
            "not converted (pixel data would not be byte-swapped)",
        )
    if not plain:
        offered = ", ".join(UID(ts).name for ts in mine)
        return Choice(
            "cannot_convert",
            why=f"the peer accepted only {offered} for this SOP class; transcoding to a "
            "compressed syntax is not done",
        )
    if own.is_compressed:
        target = ExplicitVRLittleEndian if ExplicitVRLittleEndian in plain else plain[0]
        return Choice("convert", target, decompress=True)
    return Choice("convert", plain[0])


def _name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid
