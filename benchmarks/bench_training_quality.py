"""Weighted F1 (95 % bootstrap CI) on the 809 test comments, from the training
chapter's full-profile run (executed first when the cache lacks it; about an hour on
2 cores): the offline encoder's best binary and five-class (flat or layered) rows
against the paper's 0.71 — trained on the training set alone, and with the
cross-fitted target-domain encoder that also trains on other folds of the test set."""

from __future__ import annotations

from chapter_runs import chapter_results, run_metadata

CHAPTER = "training"
PAPER = 0.71
TEST_COMMENTS = 809  # the paper's whole test set; a run on a sample (test_rows) cannot meet the target


def best(rows: list[dict], task_names: tuple[str, ...]) -> dict | None:
    candidates = [r for r in rows if r["task"] in task_names]
    if not candidates:
        return None
    top = max(candidates, key=lambda r: r["weighted_f1"])
    return {"model": top["model"], "task": top["task"], "decision": top["decision"],
            **{k: round(top[k], 4) for k in ("weighted_f1", "ci_low", "ci_high", "macro_f1")}}


def run() -> dict:
    results, meta = chapter_results(CHAPTER, "full")
    encoder_rows = [r for r in results["results"] if "encoder" in r["model"]]
    protocols = {
        "training set only": [r for r in encoder_rows if "target folds" not in r["model"]],
        "with target folds (cross-fitted)": encoder_rows,
    }
    whole_test = results.get("test_comments") == TEST_COMMENTS
    summary = {}
    for protocol, rows in protocols.items():
        binary, five = best(rows, ("binary",)), best(rows, ("multiclass", "layered"))
        summary[protocol] = {"binary": binary, "five_class": five,
                             "meets_target": bool(whole_test and binary and five and binary["weighted_f1"] >= PAPER
                                                  and five["weighted_f1"] >= PAPER)}
    return {
        "profile": "full",
        **run_metadata(meta),
        "paper_weighted_f1": PAPER,
        "test_comments": results.get("test_comments"),
        "floor_always_none": results["floor"],
        "best_by_protocol": summary,
        "target": "offline encoder: weighted F1 >= 0.71 on binary and five-class",
        "meets_target": {protocol: s["meets_target"] for protocol, s in summary.items()},
        "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in encoder_rows],
    }
