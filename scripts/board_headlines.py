"""Write the reference board's headline rows into the README (between the board markers).

    python scripts/board_headlines.py          # rewrite the README block from leaderboard/reference/
    python scripts/board_headlines.py --check  # exit 1 when the README block is not what the board says

Per task, on real data: the ranked methods (complete on every cell of the task's grid so far),
then the incomplete ones with their coverage; the score is the task score (the mean primary
metric scaled between the negative (0) and positive (1) controls), the cells "n of m".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- reference-board:start -->", "<!-- reference-board:end -->"
ROWS = 5  # per task


def headlines() -> str:
    from stbench.leaderboard.tables import Board, filter_cells, format_number, load_board

    table, catalog, _ = load_board()
    board = Board(filter_cells(table, view="real"), catalog)
    out = [f"{len(board.table)} real-data cells on {table['dataset'].nunique()} datasets "
           f"(`stbench board status` gives its coverage and any stale cells)."]
    for task in board.tasks:
        t = board.task_table(task)
        t = t[t["kind"] != "control"].head(ROWS)
        primary = catalog["tasks"].get(task, {}).get("primary_metric", "")
        out.append(f"\n**{task}** (task score: scaled {primary})\n")
        out.append("| rank | method | kind | task score | cells |")
        out.append("|---|---|---|---|---|")
        for _, r in t.iterrows():
            rank = format_number(r["rank"], "rank") or "incomplete"
            out.append(f"| {rank} | {r['method']} | {r['kind']} | {format_number(r['task score'], 'score')} "
                       f"| {r['cells']} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{headlines()}\n{END}{tail}"
    if args.check:
        if new != text:
            print("the README's reference-board rows are not the board's: python scripts/board_headlines.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    print(f"wrote the reference board's headlines into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
