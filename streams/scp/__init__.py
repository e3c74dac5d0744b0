"""The DICOM SCP: C-ECHO/C-STORE in, instance files on disk, ``instance.received`` out.

The role is :class:`ScpService`; :func:`outbox_dir` says where its outbox lives. The
statuses it answers are in :mod:`streams.scp.statuses`. Everything else is internal to
the package: import it from its module (e.g. ``streams.scp.outbox.encode_entry``).
"""

from streams.scp.service import ScpService, kafka_publisher_factory, outbox_dir

__all__ = ["ScpService", "kafka_publisher_factory", "outbox_dir"]
