"""Configuration and start-up helpers for SCP tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.config import AdapterConfig


def scp_config(
    storage: Path,
    bootstrap: str,
    prefix: str,
    *,
    ae_titles: tuple[str, ...] = ("CT-AE",),
    partitions: int = 3,
    ae_extra: dict[str, dict[str, Any]] | None = None,
    **scp: Any,
) -> AdapterConfig:
    """An adapter config for an SCP on 127.0.0.1, a free port and no disk watermark."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "watermark_percent": 100,
        "reserve_space_gb": 0,
        "ae_titles": [
            {"ae_title": ae, "processorSettings": {}, **(ae_extra or {}).get(ae, {})}
            for ae in ae_titles
        ],
    }
    settings.update(scp)
    return AdapterConfig.model_validate(
        {
            "adapter_id": "test-adapter",
            "storage": str(storage),
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "partitions": partitions,
            },
            "scp": settings,
        }
    )
