"""Whether a change left the quick book's CPU numbers as they were: every number printed by
every code cell, and every figure, of two builds compared cell by cell (by position in
each chapter, since a change may reformat a cell's source).

Run for the device work (issue 23) with ``CROWDLENS_COMPARE_BEFORE`` and
``CROWDLENS_COMPARE_AFTER`` naming two folders of executed chapters (a cache's
``book/chapters``), or ``CROWDLENS_COMPARE_COMMITS="<before> <after>"`` to build both
quick books first from git worktrees (about an hour on two cores, one after the other).
Timings, cache paths and commit hashes are not numbers of the book and are left out.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from chapter_runs import target

from crowdlens.core.config import cache_dir

#: Output lines about time or speed: they differ between any two runs.
TIMING = re.compile(r"(\d+(\.\d+)?\s*(s|sec|seconds|min|it/s|s/it)\b|elapsed|took|wall|per_s|per second|"
                    r"seconds|\d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT)", re.I)
#: Where a number is not a result: file paths, commit hashes, object addresses in reprs.
NOT_RESULTS = re.compile(r"(/[\w.\-]+)+|`[0-9a-f]{7,40}`|commit \S+")
#: The repr of a matplotlib object left as a cell's last value: the figure itself is compared.
PLOT_REPR = re.compile(r"^\(?\[?(<Figure|<Axes|<matplotlib|Text\(|array\(\[[\d, ]*\]\),\s*\[Text\()")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
#: Throughput tables print speeds in columns, not lines: their rows are timing too.
SPEED_COLUMNS = ("comments_per_s", "seconds to train and test", "seconds per comment")


def text_lines(cell) -> list[str]:
    """The text a reader sees under a cell (stdout, plain-text and HTML results, errors)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            parts.append(output.get("text", ""))
        elif output.get("output_type") == "error":
            parts.append(f"error {output.get('ename')}")
        for mime in ("text/plain", "text/markdown"):
            value = output.get("data", {}).get(mime)
            value = value if isinstance(value, str) else "".join(value or [])
            if value and not PLOT_REPR.match(value) and not any(c in value for c in SPEED_COLUMNS):
                parts.append(value)
    return [line for line in "\n".join(parts).splitlines() if not TIMING.search(line)]


def numbers(cell) -> list[str]:
    return [n for line in text_lines(cell) for n in NUMBER.findall(NOT_RESULTS.sub("", line))]


def figures(cell) -> list[str]:
    return [hashlib.sha256(str(o["data"]["image/png"]).encode()).hexdigest()
            for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def code_cells(folder: Path, chapter: str):
    found = sorted(folder.glob(f"{chapter}*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no executed {chapter} chapter in {folder}")
    return [c for c in nbformat.read(found[0], as_version=4).cells if c.cell_type == "code"]


def compare(before: Path, after: Path) -> dict:
    chapters = sorted({p.name.split("-")[0].removesuffix(".ipynb") for p in before.glob("*.ipynb")})
    differing, cells, figures_total, figures_differing = [], 0, 0, 0
    for chapter in chapters:
        old, new = code_cells(before, chapter), code_cells(after, chapter)
        if len(old) != len(new):
            differing.append({"chapter": chapter, "cell": None, "why": f"{len(old)} vs {len(new)} code cells"})
            continue
        for index, (a, b) in enumerate(zip(old, new)):
            cells += 1
            if numbers(a) != numbers(b):
                differing.append({"chapter": chapter, "cell": index, "why": "numbers",
                                  "before": numbers(a)[:20], "after": numbers(b)[:20]})
            fa, fb = figures(a), figures(b)
            figures_total += max(len(fa), len(fb))
            figures_differing += sum(x != y for x, y in zip(fa, fb)) + abs(len(fa) - len(fb))
    return {"chapters": chapters, "code_cells": cells, "figures": figures_total,
            "figures_differing": figures_differing, "cells_differing": differing}


def build(commit: str, cache: Path) -> Path:
    """The quick book of ``commit`` executed into ``cache`` (its own worktree and cache)."""
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               check=True, cwd=Path(__file__).parent).stdout.strip())
    tree = cache / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=root, check=True)
    try:
        (cache / "models").symlink_to(cache_dir() / "models")
        env = {**os.environ, "CROWDLENS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree / "lib")}
        subprocess.run([sys.executable, "-m", "crowdlens", "book", "--profile", "quick", "--no-html"],
                       cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, check=False)
    return cache / "book" / "chapters"


def run() -> dict:
    before, after = os.environ.get("CROWDLENS_COMPARE_BEFORE"), os.environ.get("CROWDLENS_COMPARE_AFTER")
    commits = os.environ.get("CROWDLENS_COMPARE_COMMITS", "").split()
    with tempfile.TemporaryDirectory(prefix="crowdlens-compare-") as scratch:
        if not (before and after):
            if len(commits) != 2:
                raise SystemExit("set CROWDLENS_COMPARE_BEFORE and _AFTER (folders of executed chapters) or "
                                 "CROWDLENS_COMPARE_COMMITS='<before> <after>' to build both quick books")
            before, after = (build(c, Path(scratch) / name) for c, name in zip(commits, ("before", "after")))
        result = compare(Path(before), Path(after))
    return {
        "profile": "quick",
        "targets": {
            "cells_with_other_numbers": target(len(result["cells_differing"]), 0, "<="),
            "figures_differing": target(result["figures_differing"], 0, "<="),
        },
        "compared_commits": commits or None,
        **result,
    }
