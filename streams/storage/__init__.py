"""Instance storage: safe paths, atomic durable writes, Part 10 headers, disk watermark."""

from streams.storage.files import fsync_dir, write_atomic
from streams.storage.part10 import PREAMBLE, file_meta, part10_header
from streams.storage.paths import MAX_COMPONENT, UNKNOWN, instance_path, sanitize_component
from streams.storage.space import GB, DiskUsage, SpaceGuard, has_space, reserved_bytes
from streams.storage.uris import path_to_uri, uri_to_path

__all__ = [
    "GB",
    "MAX_COMPONENT",
    "PREAMBLE",
    "UNKNOWN",
    "DiskUsage",
    "SpaceGuard",
    "file_meta",
    "fsync_dir",
    "has_space",
    "instance_path",
    "part10_header",
    "path_to_uri",
    "reserved_bytes",
    "sanitize_component",
    "uri_to_path",
    "write_atomic",
]
