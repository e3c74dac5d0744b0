"""Record keys of both topics: ``<called_ae>/<hex HMAC-SHA256(secret, PatientID)[:32]>``.

The key decides the partition, so every instance of one patient sent to one AE title
lands on one partition and one processor owns each of its Patient, Study and Series
groups (DESIGN.md §3.3). It used to carry the Patient ID itself, which every consumer,
broker tool and compacted log then showed. A keyed hash keeps the co-partitioning (one
patient and AE title, one key) without the identifier; a secret key, rather than a
plain hash, keeps anyone who can read the topic from testing guessed Patient IDs
(medical record numbers are short) against the keys.

Every adapter on a bus must use the same secret: two secrets give one patient two keys,
two partitions and so split groups (docs/security.md, "Record keys").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

#: Hex digits of the HMAC kept in a key: 128 bits, no collision in any real archive.
KEY_HEX_DIGITS = 32

#: The secret used when none is configured: public, so keys are pseudonymous only
#: (anyone can recompute a patient's key). ``config check`` lists it as open.
LAB_KEY_SECRET = b"dicom-stream-adapter lab key secret (not secret)"

_HASHED = re.compile(rf"[0-9a-f]{{{KEY_HEX_DIGITS}}}")


#: Keys remembered per :class:`RecordKeys` (one HMAC-SHA256 saved each, ~16 MB at most);
#: the memo starts over when full.
MEMO_SIZE = 65536


@dataclass(frozen=True, slots=True)
class RecordKeys:
    """Computes record keys with one secret; the secret never shows in ``repr``.

    Keys are remembered per ``(called AE, PatientID)`` (up to :data:`MEMO_SIZE`, in
    memory only): the processors key every instance they check and every record they
    write, the SCP every instance, and a patient's instances come in runs. An HMAC per
    record was ~15 % of the processor's CPU in a profile (docs/benchmarks.md).
    """

    secret: bytes = field(default=LAB_KEY_SECRET, repr=False)
    _memo: dict[tuple[str, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __call__(self, called_ae: str, patient_id: str) -> str:
        """The key of a record about ``patient_id`` received by ``called_ae``."""
        pair = (called_ae, patient_id)
        memo = self._memo
        key = memo.get(pair)
        if key is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            digest = hmac.new(self.secret, patient_id.encode("utf-8"), hashlib.sha256)
            key = memo[pair] = f"{called_ae}/{digest.hexdigest()[:KEY_HEX_DIGITS]}"
        return key

    @classmethod
    def of(cls, secret: bytes | None) -> RecordKeys:
        """Keys with ``secret``, or with the public lab secret when it is ``None``."""
        return cls() if secret is None else cls(secret)

    @property
    def is_lab_default(self) -> bool:
        """Whether this is the public default secret (keys are pseudonymous only)."""
        return hmac.compare_digest(self.secret, LAB_KEY_SECRET)


def is_hashed_key(key: str) -> bool:
    """Whether ``key`` has the hashed form (``<AE>/<32 hex>``), not a Patient ID in clear
    (keys written before the change, see docs/security.md "Migration")."""
    _, sep, tail = key.rpartition("/")
    return bool(sep) and _HASHED.fullmatch(tail) is not None
