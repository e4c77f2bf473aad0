"""Wall time of the training chapter in the quick profile from an empty cache (every
model trained, the language model converted from GGUF first), against the issue's
5 minutes on 2 cores; and the full profile's recorded time, from its newest run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import nbformat

from chapter_runs import latest_full_run, run_meta, run_metadata, target

from crowdlens.book import runner as book

CHAPTER = "training"
QUICK_LIMIT_SECONDS = 300


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="crowdlens-bench-") as cache:
        env = {**os.environ, "CROWDLENS_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "crowdlens", "book", "--profile", "quick", "--only", CHAPTER,
                        "--force", "--no-html"], check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
    notebook = nbformat.read(book.executed_dir() / f"{CHAPTER}.ipynb", as_version=4)
    seconds = notebook.metadata.get("crowdlens", {}).get("seconds")
    cells = sorted(((cell.metadata.get("papermill", {}).get("duration") or 0, (cell.source.splitlines() or [""])[0][:60])
                    for cell in notebook.cells if cell.cell_type == "code"), reverse=True)[:6]
    full = latest_full_run(CHAPTER)
    return {
        "profile": "quick",
        "quick_chapter_seconds": seconds,
        "quick_wall_seconds_with_startup": round(wall, 1),
        "slowest_cells": [{"seconds": round(s, 1), "cell": first_line} for s, first_line in cells],
        "targets": {"quick_training_chapter_seconds": target(seconds, QUICK_LIMIT_SECONDS, "<=")},
        "full_profile": run_metadata(run_meta(full)) if full else "no full-profile run in the cache yet",
    }
