"""What a recorded result was made with: library versions and the project's git commit."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = ("stbench", "numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn", "torch",
             "torch-geometric", "pot", "harmonypy", "mlflow")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else what the platform module says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Library versions and the machine (CPU model, core count), recorded with every cell so that a
    published board can say what its numbers were measured on."""
    import os

    out = {"python": platform.python_version(), "cpu": f"{cpu_model()} ({os.cpu_count()} cores)"}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = ""
    return out


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the stbench source tree, ``+dirty`` when it has local changes, else ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha
