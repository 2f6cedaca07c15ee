"""How fast the command line answers, and what it imports to do so.

Each command runs in a fresh interpreter (best of 3 wall times). Beside it, the
reference that the manifest replaced: importing every adapter (what ``stbench
list methods`` and a name check did before), measured in the same run. Then
``python -X importtime`` of ``stbench list methods`` and of the leaderboard app:
the slowest imports, and whether torch or any adapter was loaded.

    python scripts/bench_cli.py
"""

from __future__ import annotations

import subprocess
import sys
import time

COMMANDS = {
    "stbench --help": ["--help"],
    "stbench list methods": ["list", "methods"],
    "stbench list tasks": ["list", "tasks"],
    "stbench list datasets": ["list", "datasets"],
    "stbench run --methods typo (name error)": ["run", "--methods", "typo"],
    "stbench run --methods knn_interpolation:kk=1 (parameter error)": ["run", "--methods", "knn_interpolation:kk=1"],
}
REFERENCE = {"import every adapter (the old path)": "import stbench.methods",
             "import the leaderboard app": "import stbench.leaderboard.app"}


def best_of(argv: list[str], n: int = 3) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def importtime(code: str, top: int = 6) -> tuple[list[tuple[float, str]], list[str]]:
    """The slowest cumulative imports of ``code`` and the heavy modules it loaded."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        rows.append((int(cumulative) / 1e6, name[1:].rstrip()))  # the indent after "| " is the nesting depth
    loaded = {name.strip() for _, name in rows}
    heavy = sorted(m for m in loaded if m == "torch" or m.startswith("stbench.methods.") or m == "scanpy")
    top_level = [(t, n) for t, n in rows if not n.startswith(" ")]
    return sorted(top_level, reverse=True)[:top], heavy


def main() -> None:
    cli = [sys.executable, "-m", "stbench.cli"]
    print(f"{'command':<66} {'best of 3 (s)':>14}")
    for label, args in COMMANDS.items():
        print(f"{label:<66} {best_of(cli + args):>14.2f}")
    for label, code in REFERENCE.items():
        print(f"{label:<66} {best_of([sys.executable, '-c', code]):>14.2f}")
    for label, code in (("stbench list methods", "from stbench.cli import main; main(['list', 'methods'])"),
                        ("the leaderboard app", "import stbench.leaderboard.app")):
        top, heavy = importtime(code)
        print(f"\n-X importtime, {label}: slowest top-level imports (cumulative s)")
        for seconds, name in top:
            print(f"  {seconds:6.2f}  {name}")
        print(f"  torch / adapters / scanpy loaded: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
