"""The Weibo chapter's targets, from its full-profile run (executed first when the cache
lacks it; about an hour on 2 cores): macro — the best model's mean Jensen–Shannon
divergence on held-out posts at least 30 % below the global prior; micro — a
personalised model beats LoRA without user context on ROUGE-L and emotion agreement
(paired bootstrap 95 % interval above zero)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from crowdlens import book
from crowdlens.config import cache_dir

CHAPTER = "weibo_crowds"


def latest_full_run() -> Path | None:
    """The newest executed full-profile notebook of the chapter in the cache, if any."""
    runs = sorted((cache_dir() / "book" / "chapters").glob(f"{CHAPTER}-*.ipynb"), key=lambda p: p.stat().st_mtime)
    for path in reversed(runs):
        if nbformat.read(path, as_version=4).metadata.get("crowdlens", {}).get("profile") == "full":
            return path
    return None


def chapter_results(profile: str = "full") -> tuple[dict, dict]:
    """The results cell of the full run. An hour-long run is not repeated for every code
    change: without CROWDLENS_BENCH_RERUN=1 the newest cached full run is read (its
    commit is reported); with it, or when there is none, the chapter executes now."""
    path = None if os.environ.get("CROWDLENS_BENCH_RERUN") == "1" else latest_full_run()
    if path is None:
        path = book.execute_chapter(CHAPTER, profile).notebook
    notebook = nbformat.read(path, as_version=4)
    meta = notebook.metadata.get("crowdlens", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "application/json" in output.get("data", {}):
                return output["data"]["application/json"], meta
    raise RuntimeError(f"{CHAPTER} has no results cell; rerun it with `crowdlens book --only {CHAPTER} --force`")


def run() -> dict:
    results, meta = chapter_results("full")
    macro = {}
    for split in ("random", "time"):
        rows = [r for r in results["macro"] if r["split"] == split]
        prior = next(r["js"] for r in rows if r["model"] == "global prior")
        best = min(rows, key=lambda r: r["js"])
        macro[split] = {"best_model": best["model"], "best_js": round(best["js"], 5), "prior_js": round(prior, 5),
                        "reduction": round(1 - best["js"] / prior, 4)}
    micro = {}
    for row in results["paired"]:
        micro.setdefault(row["model"], {})[row["measure"]] = {
            "difference": round(row["difference vs (a)"], 4), "ci": [round(row["ci_low"], 4), round(row["ci_high"], 4)]}
    personalised = [m for m in micro if m.startswith(("(b", "(c"))]  # (b), (b+) copy-aware, (c)
    beats = {m: all(micro[m][k]["ci"][0] > 0 for k in ("rouge_l", "emotion_agrees")) for m in personalised}
    return {
        "profile": "full",
        "chapter_seconds": meta.get("seconds"),
        "chapter_run": {k: meta.get(k) for k in ("git_commit", "started", "finished", "cache_key")},
        "macro": macro,
        "macro_target": "best JS >= 30 % below the global prior",
        "macro_meets_target": {s: v["reduction"] >= 0.30 for s, v in macro.items()},
        "micro_vs_no_context": micro,
        "micro_target": "(b), (b+) or (c) beats (a) on ROUGE-L and emotion agreement (paired 95 % CI above 0)",
        "micro_meets_target": beats,
    }
