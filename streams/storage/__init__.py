"""Storage: safe paths, atomic durable writes, Part 10 headers, disk watermark, payloads."""

from streams.storage.files import fsync_dir, write_atomic
from streams.storage.part10 import part10_header
from streams.storage.paths import UNKNOWN, instance_path, sanitize_component
from streams.storage.payloads import (
    PAYLOADS_DIR,
    StagingError,
    payload_dir,
    remove_payload,
    stage_payload,
)
from streams.storage.space import GB, DiskUsage, SpaceGuard, has_space, reserved_bytes
from streams.storage.uris import path_to_uri, uri_to_path

__all__ = [
    "GB",
    "PAYLOADS_DIR",
    "UNKNOWN",
    "DiskUsage",
    "SpaceGuard",
    "StagingError",
    "file_meta",
    "fsync_dir",
    "has_space",
    "instance_path",
    "part10_header",
    "path_to_uri",
    "payload_dir",
    "remove_payload",
    "reserved_bytes",
    "sanitize_component",
    "stage_payload",
    "uri_to_path",
    "write_atomic",
]
