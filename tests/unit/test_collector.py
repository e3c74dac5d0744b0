"""The process role's garbage-collector thresholds (processors.runtime.collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from processors.runtime.collector import THRESHOLDS, tune_for_open_groups


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("default_thresholds")
def test_tuning_makes_collections_of_the_old_generations_rare() -> None:
    tune_for_open_groups()
    young, middle, old = gc.get_threshold()
    assert (young, middle, old) == THRESHOLDS
    # a full collection at most every young * middle * old container allocations
    assert young * middle * old >= 1000 * 700 * 10 * 10
