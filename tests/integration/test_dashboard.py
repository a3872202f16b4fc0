"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
`aijobs serve` and a real PyTorch worker: the page loads without console errors, a job submitted
through the form trains with a moving progress bar and a loss chart, Cancel stops a running
job, and with auth on the page asks for a key. Screenshots go to test-artifacts/.

Without chromium (or the playwright package) these tests skip, except under CI (CI set), where
that is a failure: CI must never pass by skipping the browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import QUICK, System, child_pids, wait_until

pytest.importorskip("torch")

import torch

pytestmark = pytest.mark.torch

CHROMIUM_ENV = "AIJOBS_TEST_CHROMIUM"  # another chromium binary, if wanted
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
QUEUE = "pytorch-2.0-cpu"
# The smallest ResNet on the demo digits (8x8 pixels): a few seconds an epoch on two idle cores,
# a loss and an accuracy every epoch, and a progress report every second within one.
RESNET_HP = {"width": 4, "image_size": 8, "batch_size": 64, "learning_rate": 0.003}
IMAGES = "/data/image_classification"
MARKUP = "<b id='injected'>not bold</b><img src=x onerror=\"document.title='owned'\">"
TIMEOUT_MS = 15_000


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason + " — CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


def chromium() -> str:
    """The chromium binary, or skip (fail under CI) with the reason."""
    binary = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")
    if binary is None:
        _skip_or_fail(
            f"chromium is not installed (apt-get install chromium, or set {CHROMIUM_ENV}); "
            "the dashboard's browser tests need it"
        )
    assert binary is not None
    return binary


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def torch_system(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[System]:
    """The API and one PyTorch worker, shared by the module's tests."""
    s = System(home=tmp_path_factory.mktemp("dashboard") / "var", data=demo_root)
    try:
        s.start_api()
        s.start_worker(QUEUE)
        yield s
    finally:
        s.stop_all()


class Tab:
    """A page in its own browser context, and every console error or uncaught exception in it."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1366, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.url = url
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.url}/{fragment}")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture
def tab(browser: Any, torch_system: System, request: pytest.FixtureRequest) -> Iterator[Tab]:
    opened = Tab(browser, torch_system.url)
    yield opened
    opened.shot(request.node.name)  # after a failure too: what the page showed then
    opened.context.close()


def progress(tab: Tab) -> int:
    value = tab.page.get_attribute("#job-progress [role=progressbar]", "aria-valuenow")
    return int(value or 0)


def test_the_page_loads_and_shows_queues_and_workers(tab: Tab, torch_system: System) -> None:
    tab.open()
    tab.page.wait_for_selector("table.jobs tbody tr")
    assert tab.page.title() == "aijobs"
    tab.open("#/queues")
    worker = tab.page.wait_for_selector(f"#workers tr[data-worker-id]:has-text('{QUEUE}')")
    assert worker is not None
    shown = worker.text_content()
    assert "0 / 1" in shown  # busy slots of its one
    assert f"pytorch {torch.__version__}" in shown  # the framework it runs, and on what
    assert "CPU" in shown
    assert tab.page.text_content(f"tr[data-queue='{QUEUE}'] td:last-child") == "1"
    tab.shot("queues")
    tab.open("#/models")
    tab.page.get_by_text("No models.").wait_for()
    assert tab.errors == []


def test_a_job_from_the_form_shows_progress_and_a_loss_chart(
    tab: Tab, torch_system: System
) -> None:
    tab.open("#/submit")
    tab.page.fill("#model-type", "resnet")
    routing = tab.page.locator("#routing")
    routing.filter(has_text=QUEUE).wait_for()
    assert "served by a live worker" in routing.text_content()  # shown before submitting
    epochs = 60  # some seconds of training, so that the page sees it move on any machine
    tab.page.fill("#data-path", IMAGES)
    tab.page.fill("#hyperparameters", json.dumps({**RESNET_HP, "epochs": epochs}))
    tab.page.fill("#description", MARKUP)
    tab.page.click("#submit-job")
    tab.page.wait_for_url(re.compile(r"#/job/job_"))
    job_id = tab.page.url.rsplit("/", 1)[-1]

    seen = []  # the progress bar's values as the page showed them
    deadline = time.monotonic() + 300  # generous: a shared host can be many times slower
    while tab.page.text_content("#job-status") not in ("completed", "failed"):
        seen.append(progress(tab))
        assert time.monotonic() < deadline, f"job still running: {seen[-1]}%"
        time.sleep(0.2)
    assert tab.page.text_content("#job-status") == "completed", torch_system.status(job_id)
    moving = sorted(set(seen) - {0, 100})
    assert len(moving) >= 2, seen  # it moved while the job ran, not only from 0 to 100
    assert seen == sorted(seen)  # and never backwards
    assert progress(tab) == 100

    chart = tab.page.locator(f"#loss-chart[data-points='{epochs}']")
    chart.wait_for()
    assert chart.locator("canvas").count() == 1
    assert "train_loss" in chart.text_content()  # the legend names the series it draws
    # The description is text on the page, never markup.
    assert tab.page.get_by_text(MARKUP).count() == 1
    assert tab.page.locator("#injected").count() == 0
    assert tab.page.title() == "aijobs"
    tab.shot("trained-job")

    # Its model, with its size (this host sees its files) and its training job.
    model_id = torch_system.status(job_id)["model_id"]
    tab.open("#/models")
    card = tab.page.locator(f".model[data-model-id='{model_id}']")
    card.wait_for()
    assert re.search(r"size\s*\d+(\.\d)? (B|KiB|MiB)", card.text_content())
    assert card.locator(f"a[href='#/job/{job_id}']").count() == 1
    tab.shot("models")
    # One click from an inference job: the form names the model and says where it runs.
    card.locator("text=Run inference").click()
    assert tab.page.input_value("#model-id") == model_id
    tab.page.locator("#routing").filter(has_text=QUEUE).wait_for()

    tab.open("#/jobs")
    row = tab.page.wait_for_selector(f"tr[data-job-id='{job_id}']")
    assert row is not None
    assert "completed" in row.text_content()
    assert tab.errors == []


def test_cancel_stops_a_running_job(tab: Tab, torch_system: System) -> None:
    hyperparameters = {**RESNET_HP, "epochs": 500}  # minutes: it is running when cancelled
    body = {"model_type": "resnet", "data_path": IMAGES, "hyperparameters": hyperparameters}
    job_id = torch_system.submit("/jobs/training", body)
    tab.open(f"#/job/{job_id}")
    tab.page.locator("#job-status").filter(has_text="running").wait_for(timeout=60_000)
    # A job behind it says what it waits for (the worker's heartbeat names its job), and the
    # queue shows how long its oldest job has waited.
    behind = torch_system.submit("/jobs/training", body)

    def named() -> bool:
        return f"busy with {job_id}" in torch_system.status(behind)["waiting"]["reason"]

    wait_until(named, 30, "the waiting reason to name the running job")
    tab.open("#/queues")
    oldest = tab.page.text_content(f"tr[data-queue='{QUEUE}'] td:nth-child(6)")
    assert re.fullmatch(r"\d+[smhd]", oldest or ""), oldest
    tab.shot("queue-waiting")
    assert torch_system.delete(f"/jobs/{behind}").status_code == 200
    tab.open(f"#/job/{job_id}")
    tab.page.click("#cancel-job")
    tab.page.locator("#job-status").filter(has_text="cancelled").wait_for()
    assert torch_system.status(job_id)["status"] == "cancelled"
    wait_until(lambda: not child_pids(job_id), 15, "the training child to be stopped")
    assert tab.page.is_disabled("#cancel-job")
    assert tab.errors == []


def test_with_auth_on_the_page_asks_for_a_key(
    browser: Any, tmp_path: Path, demo_root: Path
) -> None:
    s = System(home=tmp_path / "var", data=demo_root, env_overrides={"AIJOBS_AUTH": "required"})
    # A process of its own: Playwright's sync API holds an event loop in this thread.
    made = subprocess.run(
        [sys.executable, "-m", "aijobs", "keys", "create", "ops", "--admin"],
        env=s.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    s.start_api()
    tab = Tab(browser, s.url)
    try:
        accepted = s.post("/jobs/training", json=QUICK, headers={"Authorization": f"Bearer {key}"})
        assert accepted.status_code == 200, accepted.text
        job_id = accepted.json()["job_id"]
        assert s.get("/jobs").status_code == 401  # the API behind the page needs the key
        tab.open()
        dialog = tab.page.locator("#key-dialog[open]")
        dialog.wait_for()
        tab.page.fill("#key-input", "aij_not-a-key")
        tab.page.click("#key-form button")
        dialog.filter(has_text="refused").wait_for()
        tab.page.fill("#key-input", key)
        tab.page.click("#key-form button")
        tab.page.wait_for_selector(f"tr[data-job-id='{job_id}']")
        assert not dialog.is_visible()
        tab.shot("auth")
        # The browser reports each refused request as a console error; nothing else is one.
        assert [e for e in tab.errors if "401" not in e] == []
    finally:
        tab.context.close()
        s.stop_all()
