"""``stbench leaderboard`` served on localhost and loaded in headless Chromium.

Checks what a reader sees: the overview's data grid lists the methods of a
results folder made by real ``stbench run`` invocations, and a task page
renders its table and charts. Set ``STBENCH_SCREENSHOTS=DIR`` to keep PNGs of
both pages. Skipped, with the reason, only where no Chromium is installed
(``.ci/run`` installs Debian's ``chromium`` when it can).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from headless_chromium import Browser, find_chromium, free_port, wait_http  # noqa: E402

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="no chromium on PATH (apt-get install -y chromium; .ci/run does)")

GRID_FIRST_COLUMN = """Array.from(document.querySelectorAll('[data-testid="stDataFrame"]')[0]
    .querySelectorAll('tbody tr')).map(r => r.querySelector('td') && r.querySelector('td').textContent)"""


@pytest.fixture
def server(leaderboard_results):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stbench.cli", "leaderboard", "--results",
                             str(leaderboard_results), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=90) == "ok"
        yield f"http://127.0.0.1:{port}"
    finally:  # the server is the command itself (it execs Streamlit); its group goes too
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_overview_and_task_page_render_in_chromium(server, leaderboard_results, tmp_path):
    shots = Path(os.environ.get("STBENCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    recorded = set(pd.read_parquet(leaderboard_results / "results.parquet")["method"])
    browser = Browser()
    try:
        browser.open(server + "/")  # a cold server: the first load must render too
        shown = set(filter(None, browser.evaluate(GRID_FIRST_COLUMN)))
        assert recorded <= shown and "low_rank_completion:iterations=1" in shown
        text = browser.text()
        assert "stbench leaderboard" in text and "Failed cells: 3" in text
        assert browser.screenshot(shots / "overview.png").stat().st_size > 20_000  # not a blank page

        # no Deploy button on a reader's board; blanks, not "None", where a method has no value
        assert browser.evaluate("document.querySelectorAll('[data-testid=\"stAppDeployButton\"]').length") == 0
        assert "None" not in browser.evaluate("""Array.from(document.querySelectorAll(
            '[data-testid="stDataFrame"] td')).map(td => td.textContent).join(' ')""")

        browser.open(server + "/?page=tasks&task=domain_identification")
        rows = set(filter(None, browser.evaluate(GRID_FIRST_COLUMN)))
        assert rows == {"pca_kmeans", "leiden_k", "negative_control", "positive_control"}
        assert browser.evaluate("document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]').length") >= 2
        text = browser.text()
        assert "Task: domain_identification" in text and "Accuracy vs cost" in text
        browser.screenshot(shots / "task_domain_identification.png")
    finally:
        browser.close()


def test_the_exported_html_renders_as_a_page_with_its_charts(leaderboard_results, tmp_path):
    """`stbench export --format html` opened from disk: tables, SVG charts, descriptions."""
    from stbench.cli import main

    page = tmp_path / "board.html"
    assert main(["export", "--results", str(leaderboard_results), "--format", "html", "-o", str(page)]) == 0
    shots = Path(os.environ.get("STBENCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser = Browser(width=1300, height=2400)
    try:
        browser.open(page.as_uri(), ready="svg rect")
        assert browser.evaluate("document.querySelectorAll('table').length") == 6
        assert browser.evaluate("document.querySelectorAll('svg circle').length") > 0
        text = browser.text()
        assert "stbench leaderboard" in text and "Adjusted Rand index" in text and "git commit" in text
        assert browser.screenshot(shots / "export.png").stat().st_size > 20_000
    finally:
        browser.close()
