"""Install a method plugin the way pip would, without pip: a module and a ``.dist-info`` folder
with its ``stbench.methods`` entry point, on a PYTHONPATH a child process is given."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def install_plugin(root: Path, module: str, source: str, entry_points: dict[str, str] | None = None) -> dict:
    """Write ``root/module.py`` and ``root/module-0.1.dist-info``; return the environment that finds it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    eps = entry_points or {module: module}
    (info / "entry_points.txt").write_text("[stbench.methods]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


CLI = [sys.executable, "-m", "stbench.cli"]
