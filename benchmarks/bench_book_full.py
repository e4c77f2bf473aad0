"""Wall time of the full book on two cores, per chapter, against 3 hours: from the
newest full-profile run of each chapter in the cache (each recorded its own seconds and
commit), or, with CROWDLENS_BENCH_RERUN=1 or when a chapter has none, by executing it
now from an empty chapter cache (hours: run it in the background with a log). With
CROWDLENS_BENCH_CACHED_ONLY=1 a chapter without a cached full run is recorded as not
measured (and the total with it) instead of executed: a partial record of the runs that
fitted in a session."""

from __future__ import annotations

import os

from chapter_runs import latest_full_run, run_meta, target

from crowdlens.book import runner as book

FULL_BOOK_GOAL_SECONDS = 3 * 3600


def run() -> dict:
    rerun = os.environ.get("CROWDLENS_BENCH_RERUN") == "1"
    cached_only = os.environ.get("CROWDLENS_BENCH_CACHED_ONLY") == "1"
    chapters, runs, missing = {}, {}, []
    for name in book.toc_chapters():
        path = None if rerun else latest_full_run(name)
        if path is None and cached_only:
            chapters[name], runs[name] = None, None
            missing.append(name)
            continue
        if path is None:
            path = book.execute_chapter(name, "full", force=True).notebook
        meta = run_meta(path)
        chapters[name] = meta.get("seconds")
        runs[name] = {k: meta.get(k) for k in ("git_commit", "started", "finished")}
    measured = [s for s in chapters.values() if s is not None]
    total = round(sum(measured), 1) if len(measured) == len(chapters) else None
    return {
        "profile": "full",
        "targets": {"full_book_chapter_seconds": target(total, FULL_BOOK_GOAL_SECONDS, "<=")},
        "chapter_seconds": chapters,
        "chapter_runs": runs,
        "not_measured": missing,
        "note": "chapter execution only (the HTML build adds about a minute); runs of different "
                "commits are summed when the cache holds no newer full run of a chapter",
    }
