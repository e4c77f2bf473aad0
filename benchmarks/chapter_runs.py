"""The newest full-profile run of a chapter, and its headline-results cell: the
benchmarks that judge a chapter's targets read what the book computed instead of
training everything a second time."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from crowdlens.book import runner as book
from crowdlens.core.config import cache_dir


def target(value, goal, direction: str) -> dict:
    """One target of a benchmark JSON: ``direction`` ">=" or "<="; not met when unmeasured."""
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}")
    met = value is not None and (value >= goal if direction == ">=" else value <= goal)
    return {"value": value, "goal": goal, "direction": direction, "met": bool(met)}


def run_meta(path: Path) -> dict:
    """What the book runner recorded of an executed chapter (profile, seconds, commit...)."""
    return nbformat.read(path, as_version=4).metadata.get("crowdlens", {})


def latest_full_run(chapter: str) -> Path | None:
    """The newest executed full-profile notebook of ``chapter`` in the cache, if any."""
    runs = sorted((cache_dir() / "book" / "chapters").glob(f"{chapter}-*.ipynb"), key=lambda p: p.stat().st_mtime)
    for path in reversed(runs):
        if run_meta(path).get("profile") == "full":
            return path
    return None


def chapter_results(chapter: str, profile: str = "full") -> tuple[dict, dict]:
    """The chapter's JSON results cell and its run metadata. An hour-long run is not
    repeated for every code change: without CROWDLENS_BENCH_RERUN=1 the newest cached
    full run is read (its commit is reported); with it, or when there is none, the
    chapter executes now."""
    path = None if os.environ.get("CROWDLENS_BENCH_RERUN") == "1" else latest_full_run(chapter)
    if path is None:
        path = book.execute_chapter(chapter, profile).notebook
    notebook = nbformat.read(path, as_version=4)
    meta = notebook.metadata.get("crowdlens", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "application/json" in output.get("data", {}):
                return output["data"]["application/json"], meta
    raise RuntimeError(f"{chapter} has no results cell; rerun it with `crowdlens book --only {chapter} --force`")


def run_metadata(meta: dict) -> dict:
    return {"chapter_seconds": meta.get("seconds"),
            "chapter_run": {k: meta.get(k) for k in ("git_commit", "started", "finished", "cache_key")}}
