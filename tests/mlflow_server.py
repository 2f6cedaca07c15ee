"""A real MLflow tracking server for the tests that log over HTTP (its own process group)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from headless_chromium import wait_http


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """Serve ``folder/server.db`` on 127.0.0.1:port; return once it answers its health check."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                               "--artifacts-destination", str(folder / "server-artifacts"), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health", timeout=90).strip() == "OK"
    except BaseException:
        server.kill()
        raise
    return server
