"""Wall time of building the quick book from an empty chapter cache with a warm set-up
(the offline models already converted, as after a first `make book`), per chapter and
per cell, against 8 minutes on two cores."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import nbformat

from chapter_runs import run_meta, target

from crowdlens.book import runner as book
from crowdlens.core import hub
from crowdlens.core.config import cache_dir

QUICK_BOOK_GOAL_SECONDS = 480


def run() -> dict:
    for name in ("minilm", "smollm2"):  # the warm set-up: converted once, outside the timing
        hub.resolve_model(name)
    with tempfile.TemporaryDirectory(prefix="crowdlens-bench-") as cache:
        os.symlink(cache_dir() / "models", os.path.join(cache, "models"))
        env = {**os.environ, "CROWDLENS_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "crowdlens", "book", "--profile", "quick", "--force"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - started
    chapters, cells = {}, []
    for name in book.toc_chapters():
        path = book.executed_dir() / f"{name}.ipynb"
        chapters[name] = run_meta(path).get("seconds")
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                seconds = cell.metadata.get("papermill", {}).get("duration") or 0
                cells.append({"chapter": name, "seconds": round(seconds, 1),
                              "cell": (cell.source.splitlines() or [""])[0][:70]})
    return {
        "profile": "quick",
        "targets": {"quick_book_seconds": target(round(total, 1), QUICK_BOOK_GOAL_SECONDS, "<=")},
        "chapter_seconds": chapters,
        "html_and_overhead_seconds": round(total - sum(v or 0 for v in chapters.values()), 1),
        "slowest_cells": sorted(cells, key=lambda c: -c["seconds"])[:12],
    }
