"""Wall time of the full book on two cores, per chapter, against 3 hours: from the
newest full-profile run of each chapter in the cache (each recorded its own seconds and
commit), or, with CROWDLENS_BENCH_RERUN=1 or when a chapter has none, by executing it
now from an empty chapter cache (hours: run it in the background with a log). With
CROWDLENS_BENCH_CACHED_ONLY=1 a chapter without a cached full run is not executed: its
run is carried over from the committed record (``results/book_full.json``) when that
holds one, with the commit, date and machine it was measured on, else recorded as not
measured (and the total with it). No session on two cores runs the whole full book, and
a new machine starts with an empty cache: the record is built chapter by chapter."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chapter_runs import latest_full_run, run_meta, target
from run import machine as current_machine

from crowdlens.book import runner as book

FULL_BOOK_GOAL_SECONDS = 3 * 3600
RECORD = Path(__file__).resolve().parent / "results" / "book_full.json"


def committed_runs() -> dict:
    """Each chapter's run in the committed record, with the machine it ran on (records
    written before runs carried their own machine take the record's)."""
    if not RECORD.is_file():
        return {}
    record = json.loads(RECORD.read_text())
    runs = {}
    for name, run in (record.get("chapter_runs") or {}).items():
        seconds = (record.get("chapter_seconds") or {}).get(name)
        if run and seconds is not None:
            runs[name] = {"seconds": seconds, **run, "machine": run.get("machine", record.get("machine"))}
    return runs


def run() -> dict:
    rerun = os.environ.get("CROWDLENS_BENCH_RERUN") == "1"
    cached_only = os.environ.get("CROWDLENS_BENCH_CACHED_ONLY") == "1"
    chapters, runs, missing, carried = {}, {}, [], []
    earlier = committed_runs() if cached_only else {}
    for name in book.toc_chapters():
        path = None if rerun else latest_full_run(name)
        if path is None and cached_only:
            run = earlier.get(name)
            chapters[name] = None if run is None else run.pop("seconds")
            runs[name] = None if run is None else {**run, "carried_over": True}
            (missing if run is None else carried).append(name)
            continue
        if path is None:
            path = book.execute_chapter(name, "full", force=True).notebook
        meta = run_meta(path)
        chapters[name] = meta.get("seconds")
        runs[name] = {**{k: meta.get(k) for k in ("git_commit", "started", "finished")},
                      "machine": current_machine()}
    measured = [s for s in chapters.values() if s is not None]
    total = round(sum(measured), 1) if len(measured) == len(chapters) else None
    return {
        "profile": "full",
        "targets": {"full_book_chapter_seconds": target(total, FULL_BOOK_GOAL_SECONDS, "<=")},
        "chapter_seconds": chapters,
        "chapter_runs": runs,
        "not_measured": missing,
        "carried_over": carried,
        "note": "chapter execution only (the HTML build adds about a minute); each chapter from an "
                "empty chapter cache, runs of different commits and machines summed when no session "
                "ran them all (each run names its commit and machine)",
    }
