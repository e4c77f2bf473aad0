"""Wall time of building the quick book from an empty cache (every chapter executed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from chapter_runs import run_meta

from crowdlens.book import runner as book


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="crowdlens-bench-") as cache:
        env = {**os.environ, "CROWDLENS_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "crowdlens", "book", "--profile", "quick", "--force"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - started
    chapters = {}
    for name in book.toc_chapters():
        chapters[name] = run_meta(book.executed_dir() / f"{name}.ipynb").get("seconds")
    return {
        "profile": "quick",
        "total_seconds": round(total, 1),
        "chapter_seconds": chapters,
        "html_and_overhead_seconds": round(total - sum(v or 0 for v in chapters.values()), 1),
    }
