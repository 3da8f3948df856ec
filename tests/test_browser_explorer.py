"""The link explorer page in a real browser: Debian's chromium driven by chromium-driver.

A real ``crossrec serve`` process (uvicorn on 127.0.0.1, a free port, ``--ids`` from the
ingested event files) serves a small linked workspace; the page is loaded, given a token,
asked for accounts, and the browser's console is read. The last test does the same against
the demo workspace (``make demo``) and saves a screenshot of the page (to
``$CROSSREC_EXPLORER_SCREENSHOT`` when set, which is how docs/explorer.png is made).

Run with ``make test-browser`` (installs chromium and chromium-driver where missing).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.worlds import linked_world

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DEMO = REPO / "demo-workspace"
WAIT = 60


@dataclass
class Server:
    base: str
    token: str
    log: Path


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _crossrec(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "crossrec", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done


@contextmanager
def serve(root: Path, ids: list[str]) -> Iterator[Server]:
    """``crossrec serve`` on ``root`` with a fresh read token, until the block ends."""
    token = json.loads(
        _crossrec("token", "create", "--workspace", str(root), "--scope", "read", "--json").stdout
    )["token"]
    port = _free_port()
    log_path = root.parent / f"server-{port}.log"
    args = ["serve", "--workspace", str(root), "--host", "127.0.0.1", "--port", str(port)]
    for spec in ids:
        args += ["--ids", spec]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crossrec", *args], stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("server not ready in 240 s: " + log_path.read_text())
                time.sleep(0.3)
            yield Server(base, token, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def driver():
    """Headless chromium through chromium-driver, console messages kept."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed: run `make test-browser`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(WAIT)
    yield browser
    browser.quit()


def _linked_pair(ws, files: dict[str, Path]) -> dict[str, str]:
    """Raw ids of the most probable asserted link between accounts of ``files`` (platform ->
    its events file): platform -> raw id."""
    links = [r for r in ws.store.read("links").to_pylist() if r["source"] == "matcher"]
    raw: dict[tuple[str, str], str] = {}
    for platform, path in files.items():
        with path.open(newline="") as f:
            for account in {row["account"] for row in csv.DictReader(f)}:
                raw[(platform, ws.pseudonymiser.account(platform, account))] = account
    for r in sorted(links, key=lambda r: -r["probability"]):
        a, b = (r["platform_a"], r["account_a"]), (r["platform_b"], r["account_b"])
        if a in raw and b in raw:
            return {a[0]: raw[a], b[0]: raw[b]}
    raise AssertionError("the workspace has no asserted link between accounts of the id lists")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ws, data = linked_world(tmp_path_factory)
    files = {p: data / p / "events.csv" for p in ("video", "music")}
    pair = _linked_pair(ws, files)
    root = ws.root
    ws.close()  # the server takes the workspace's writer lock
    with serve(root, [f"{p}={f}" for p, f in files.items()]) as server:
        yield server, pair["music"], pair["video"]


# -- helpers ------------------------------------------------------------------------------------
def _wait(driver, css: str, timeout: float = WAIT):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def _wait_text(driver, css: str, text: str, timeout: float = WAIT) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
    )


def _open(driver, server: Server, token: str | None = None) -> None:
    """Load the page in a fresh tab state and give it ``token`` (the server's by default)."""
    driver.get(server.base + "/ui")
    driver.execute_script("sessionStorage.clear(); location.hash = '';")
    driver.get(server.base + "/ui")
    box = _wait(driver, "#token")
    box.send_keys(token or server.token)
    driver.find_element("css selector", "#token-form button").click()


def _lookup(driver, platform: str, account: str) -> None:
    from selenium.webdriver.support.ui import Select

    _wait(driver, "#lookup-panel")
    Select(driver.find_element("id", "platform")).select_by_value(platform)
    box = driver.find_element("id", "account")
    box.clear()
    box.send_keys(account)
    driver.find_element("css selector", "#lookup-form button").click()


def _console(driver) -> list[dict]:
    """Console entries since the last call, warnings and errors only."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


# -- tests --------------------------------------------------------------------------------------
def test_page_takes_a_token_and_shows_the_linkage_summary(driver, world):
    server, _, _ = world
    _open(driver, server)
    _wait_text(driver, "#summary", "threshold")
    summary = driver.find_element("id", "summary")
    assert "asserted links" in summary.text and "held-out precision" in summary.text
    charts = summary.find_elements("css selector", "svg.chart")
    assert len(charts) == 2  # precision-recall and calibration, drawn in the page
    assert "Precision–recall" in charts[0].text and "Calibration" in charts[1].text
    assert "raw id on" in driver.find_element("id", "ids-note").text
    token = driver.execute_script("return sessionStorage.getItem('crossrec.token')")
    assert token == server.token
    assert _console(driver) == []


def test_lookup_shows_the_person_with_evidence_profile_and_recommendations(driver, world):
    server, music, video = world
    _open(driver, server)
    _lookup(driver, "music", music)
    _wait(driver, "#person article.link")
    person = driver.find_element("id", "person")
    # the partner is shown by its raw id: the server was given the id lists
    assert f"video · {video}" in person.text
    assert "asserted" in person.text
    evidence = person.find_elements("css selector", ".evidence")
    assert evidence, person.text
    assert evidence[0].find_elements("css selector", "svg.dist")  # against the distributions
    assert "false pairs" in evidence[0].text
    _wait(driver, "#profile svg.rhythm")
    assert "Weekly rhythm" in driver.find_element("id", "profile").text
    _wait(driver, "#recommendations table")
    rows = driver.find_elements("css selector", "#recommendations tbody tr")
    assert len(rows) == 10 and all(r.text.strip() for r in rows)
    _wait(driver, "#similar table")
    assert driver.find_elements("css selector", "#similar tbody tr")
    assert driver.execute_script("return location.hash").startswith("#platform=music")
    assert _console(driver) == []


def test_an_unknown_account_shows_a_message(driver, world):
    server, _, _ = world
    _open(driver, server)
    _lookup(driver, "video", "no-such-account")
    _wait_text(driver, "#messages", "No account 'no-such-account' on platform 'video'")
    assert not driver.find_element("id", "results").is_displayed()
    # the 404 answer is the only thing the console reports: no script error
    logged = _console(driver)
    assert all(e["source"] == "network" and " 404 " in e["message"] for e in logged), logged


def test_a_wrong_token_is_refused_in_the_page(driver, world):
    server, _, _ = world
    _open(driver, server, token="not-a-token")
    _wait_text(driver, "#messages", "The token was refused")
    assert driver.find_element("id", "token-panel").is_displayed()
    logged = _console(driver)
    assert all(e["source"] == "network" and " 401 " in e["message"] for e in logged), logged


def test_a_server_that_stopped_answering_shows_a_message(driver, world):
    server, music, _ = world
    _open(driver, server)
    _wait(driver, "#lookup-panel")
    driver.set_network_conditions(offline=True, latency=0, throughput=0)
    try:
        _lookup(driver, "music", music)
        _wait_text(driver, "#messages", "The server cannot be reached")
    finally:
        driver.delete_network_conditions()
    logged = _console(driver)
    assert all(e["source"] == "network" for e in logged), logged


def test_demo_workspace_in_the_browser(driver, tmp_path):
    """The page against `make demo`'s workspace (a copy): a linked account with its evidence,
    profile and recommendations; a screenshot of it is saved."""
    from crossrec.workspace import Workspace

    if not (DEMO / "models" / "CURRENT").is_file():
        pytest.skip("no demo workspace: run `make demo` (make test-browser does)")
    root = tmp_path / "demo"
    shutil.copytree(
        DEMO, root, ignore=shutil.ignore_patterns(".writer.lock", ".control", "demo-data")
    )
    files = {f.parent.name: f for f in sorted((DEMO / "demo-data").glob("*/events.csv"))}
    with Workspace(root) as ws:
        pair = _linked_pair(ws, files)
    platform = sorted(pair)[-1]
    with serve(root, [f"{p}={f}" for p, f in files.items()]) as server:
        _open(driver, server)
        _wait_text(driver, "#summary", "threshold")
        _lookup(driver, platform, pair[platform])
        _wait(driver, "#person article.link .evidence")
        other = next(p for p in pair if p != platform)
        assert f"{other} · {pair[other]}" in driver.find_element("id", "person").text
        _wait(driver, "#recommendations table")
        _wait(driver, "#profile dl")
        _wait(driver, "#similar table")
        assert _console(driver) == []
        shot = Path(os.environ.get("CROSSREC_EXPLORER_SCREENSHOT") or tmp_path / "explorer.png")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 40, 4000))
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
