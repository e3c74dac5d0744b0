"""The operator page ``/ui`` in a real headless Chromium (Debian's chromium and
chromedriver, driven by selenium; nothing is downloaded at run time).

It shows an open group; pressing "Close now" on the page produces the group's
``group.closed`` with reason forced. The REST routes behind it are in the one OpenAPI
document. Set ``UI_SCREENSHOT=path.png`` to keep a screenshot (docs/images/ui.png is
made that way).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from streams.kafka import Record
from tests.helpers.dicom import make_ct
from tests.helpers.ops import TOKEN, closed_groups, running_adapter
from tests.helpers.processor import PIPELINES
from tests.helpers.waiting import wait_for_ledger, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the UI test needs Debian's chromium and chromium-driver (apt-get install)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def test_the_page_shows_an_open_group_and_force_closes_it(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    browser: webdriver.Chrome,
) -> None:
    prefix = unique_name("ui")
    study, other = generate_uid(), generate_uid()
    async with running_adapter(
        kafka_bootstrap, tmp_path, prefix, settings="timeout: 600", processes=1
    ) as adapter:
        await adapter.send(tmp_path / "s", [make_ct(patient_id="PAT-UI", study_uid=study)])
        await adapter.send(tmp_path / "o", [make_ct(patient_id="PAT-UJ", study_uid=other)] * 2)
        url = adapter.processes[0].url
        async with httpx.AsyncClient(timeout=10.0) as client:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            paths = (await client.get(f"{url}/openapi.json", headers=auth)).json()["paths"]
            assert {"/groups", "/groups/{group_id}/close", "/jobs", "/jobs/{job_id}/retry"} <= set(
                paths
            )
            assert "/throughput" in paths
            assert (await client.get(f"{url}/groups")).status_code == 401  # data needs a token

        await asyncio.to_thread(browser.get, f"{url}/ui#token={TOKEN}")
        rows: list[object] = []

        def group_row() -> bool:
            rows[:] = browser.find_elements(By.CSS_SELECTOR, "#groups tbody tr[data-group-id]")
            return len(rows) == 2

        await wait_until(group_row, "the open groups on the page", timeout_s=30)
        (row,) = [
            r
            for r in browser.find_elements(By.CSS_SELECTOR, "#groups tbody tr")
            if "\n1\n" in "\n".join(c.text for c in r.find_elements(By.TAG_NAME, "td")) + "\n"
        ]  # the one-instance group: the first study
        cells = row.text
        assert "CLARA-OPS" in cells and "(0020,000D)" in cells and study not in cells
        row.find_element(By.TAG_NAME, "button").click()

        def forced(records: list[Record]) -> bool:
            return any(g.reason == "forced" for g in closed_groups(records))

        records = await wait_for_ledger(kafka_bootstrap, adapter.jobs_topic, forced, timeout_s=20)
        (group,) = closed_groups(records)
        assert group.group_key == study and len(group.jobs) == len(PIPELINES)
        assert "close requested" in browser.find_element(By.ID, "message").text

        def jobs_shown() -> bool:
            shown = browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr[data-job-id]")
            return len(shown) == len(PIPELINES)

        await wait_until(jobs_shown, "the group's jobs on the page", timeout_s=30)
        assert "cannot load" not in browser.find_element(By.ID, "status").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#groups tbody tr")) == 1  # the other
        async with httpx.AsyncClient(timeout=10.0) as client:
            body = (await client.get(f"{url}/throughput", headers=auth)).json()
            gid = browser.find_element(By.ID, "message").text.split()[
                4
            ]  # "close requested for group <id>"
            again = await client.post(f"{url}/groups/{gid}/close", headers=auth)
            assert again.status_code == 200 and again.json()["requested"] is False  # a no-op
            job = (await client.get(f"{url}/jobs", headers=auth)).json()["jobs"][0]
            retry = await client.post(f"{url}/jobs/{job['job_id']}/retry", headers=auth)
            assert retry.status_code == 409 and "not dead-lettered" in retry.json()["error"]
            missing = await client.post(f"{url}/jobs/no-such-job/retry", headers=auth)
            assert missing.status_code == 404
        assert sum(b["instances"] for b in body["buckets"]) == 1
        assert sum(b["jobs"] for b in body["buckets"]) == len(PIPELINES)

        def rates_shown() -> bool:
            return "1 instances grouped" in browser.find_element(By.ID, "rates").text

        await wait_until(rates_shown, "the throughput on the page", timeout_s=10)
        shot = os.environ.get("UI_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)
        shot = os.environ.get("UI_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)
