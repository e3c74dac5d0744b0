"""DICOMweb in: STOW-RS (PS3.18 §10.5) into the SCP's store path.

:class:`StowReceiver` takes a request body apart and stores each instance exactly as a
C-STORE is stored; the HTTP route that calls it is mounted by the composition root
(``processors.roles``) on the process's app. See docs/dicomweb.md.
"""

from streams.dicomweb.stow import StowError, StowReceiver

__all__ = ["StowError", "StowReceiver"]
