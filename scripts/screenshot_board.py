"""Screenshots of a results folder's leaderboard, in headless Chromium (Debian's ``chromium``).

Serves ``stbench leaderboard`` on a free port and saves a PNG (and the page's text) of the
overview, a task page, a method page, the regression page and the synthetic sanity view, then
the static page ``stbench export --format html`` writes.

    python scripts/screenshot_board.py RESULTS_DIR OUT_DIR [--task T] [--method M]
    python scripts/screenshot_board.py reference OUT_DIR --task domain_identification   # the reference board
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from headless_chromium import Browser, free_port, wait_http  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", help="a results folder, or 'reference' for the committed reference board")
    ap.add_argument("out")
    ap.add_argument("--task", default="domain_identification")
    ap.add_argument("--method", default="smoothed_pca_kmeans")
    ap.add_argument("--datasets", help="the task page filtered to these datasets (comma-separated)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    which = [] if args.results == "reference" else ["--results", args.results]
    proc = subprocess.Popen([sys.executable, "-m", "stbench.cli", "leaderboard", *which,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    task_filter = f"&datasets={args.datasets}" if args.datasets else ""
    pages = {"overview": "/", "task": f"/?page=tasks&task={args.task}{task_filter}", "method": f"/?page=methods&method={args.method}",
             "regression": f"/?page=regression&regression_method={args.method}", "sanity": "/?view=sanity"}
    try:
        wait_http(url + "/_stcore/health", timeout=90)
        browser = Browser(width=1500, height=1500)
        try:
            for name, path in pages.items():
                # the regression page of a board with one version per method says so in an alert
                ready = '[data-testid="stDataFrame"], [data-testid="stAlert"]' if name == "regression" else \
                    '[data-testid="stDataFrame"]'
                try:
                    browser.open(url + path, ready=ready)
                except TimeoutError as err:
                    print(f"{name}: skipped ({err})")
                    continue
                time.sleep(2)
                browser.screenshot(out / f"{name}.png")
                (out / f"{name}.txt").write_text(browser.text())
                print(f"{name}: {out / (name + '.png')}")
            page = out / "board.html"
            subprocess.run([sys.executable, "-m", "stbench.cli", "export", *which, "--format",
                            "html", "-o", str(page)], check=True, capture_output=True)
            browser.open(page.resolve().as_uri(), ready="table")
            browser.screenshot(out / "export.png")
            print(f"export: {out / 'export.png'}")
        finally:
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
