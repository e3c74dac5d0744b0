"""Property-based run of the process's OpenAPI document against the app (schemathesis).

In-process over ASGI: every operation of the document (cache API and probes) gets
generated requests; no answer may be a 5xx, and every answer must match the document
(status code, content type, body schema). Half the runs aim at the configured AE title
and its cached studies so the deep paths (listings, jobs, releases) are exercised.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from processors.base import JobProcessor
from processors.cache import CacheProcessor, CacheStore
from processors.http import Readiness, create_app

AE = "CACHE"
STUDIES = [f"1.2.826.0.1.3680043.8.498.{n}" for n in range(300)]
_turn = itertools.count()


def _app() -> Any:
    sched = TestScheduler()
    folder = Path(tempfile.mkdtemp(prefix="cache-schemathesis-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = CacheStore(folder / "cache.sqlite3")
    store.mark_ready()
    proc = CacheProcessor(
        AE,
        {"pipeline-lung": "P1", "pipeline-heart": "P2"},
        RecordingSink(sched),
        sched,
    )
    proc.use_store(store)
    for i, study in enumerate(STUDIES):
        for j in range(2):
            inst = make_instance(received_at=i * 1000 + j, ae=AE, patient=f"P{i % 7}", study=study)
            proc.on_next((i % 3, i * 2 + j, inst))
    processors: dict[str, JobProcessor] = {AE: proc}
    app = create_app(Readiness())
    router = CacheProcessor.api_router(processors)
    assert router is not None
    app.include_router(router)
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture(autouse=True, scope="module")
def _deep_thread_stacks() -> Iterator[None]:
    """Give the threads schemathesis runs the app in a large C stack.

    Hypothesis raises the recursion limit while it generates, so rendering a deeply
    nested generated body can recurse in C past a thread's default 8 MiB stack and
    crash the interpreter (seen once in a full CI run). The app itself runs with the
    normal recursion limit, where such input is a RecursionError, not a crash.
    """
    previous = threading.stack_size(256 << 20)
    yield
    threading.stack_size(previous)


def _aim(case: schemathesis.Case) -> None:
    """Point a generated request at the served AE title, a cached study (a new one each
    time, as jobs and releases use them up) and a configured pipeline."""
    study = STUDIES[next(_turn) % len(STUDIES)]
    if "ae_title" in (case.path_parameters or {}):
        case.path_parameters["ae_title"] = AE
    if "study_uid" in (case.path_parameters or {}):
        case.path_parameters["study_uid"] = study
    if isinstance(case.body, dict) and isinstance(case.body.get("studies"), list):
        more = [STUDIES[next(_turn) % len(STUDIES)]] if len(case.body["studies"]) > 1 else []
        case.body["studies"] = [study, *more]
        case.body.pop("pipeline_id", None)
        case.body["pipeline"] = "lung"


@pytest.mark.slow
@pytest.mark.parametrize("aimed", [False, True], ids=["generated", "aimed"])
@schema.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_no_5xx_and_answers_match_the_document(case: schemathesis.Case, aimed: bool) -> None:
    if aimed:
        _aim(case)
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    case.validate_response(
        response,
        checks=[
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
