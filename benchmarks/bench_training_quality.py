"""Weighted F1 (95 % bootstrap CI) on the 809 test comments, from the training
chapter's full-profile run (executed first when the cache lacks it; about an hour on
2 cores): the fine-tuned encoder, binary and layered five-class, against the paper's
0.71, by protocol: the paper's (no test label used; the targets), a None threshold
cross-fitted on test labels, and the target-domain encoder trained on other folds of
the test set. The model and each protocol's decision rule are fixed in advance
(``DECISION_PREFERENCE``), as the chapter's headline: none is picked on the test labels."""

from __future__ import annotations

from chapter_runs import chapter_results, run_metadata, target

from crowdlens.participation import (DECISION_PREFERENCE, PAPER_PROTOCOL, PROTOCOLS, TARGET_FOLDS_PROTOCOL,
                                     THRESHOLD_PROTOCOL)

CHAPTER = "training"
PAPER = 0.71
#: The participation-classifiers issue's goals under the paper protocol (full test set).
BINARY_GOAL, FIVE_CLASS_GOAL = 0.73, 0.70
ROC_AUC_AIM = 0.80  # of the binary model, under the paper protocol
TEST_COMMENTS = 809  # the paper's whole test set; a run on a sample (test_rows) cannot meet the target
#: Per protocol, the model and five-class task reported, fixed in advance: the fine-tuned
#: encoder and its layered model (the paper's), and the encoder trained on target folds
#: (it has no layered variant).
HEADLINE = {PAPER_PROTOCOL: ("fine-tuned encoder", "layered"), THRESHOLD_PROTOCOL: ("fine-tuned encoder", "layered"),
            TARGET_FOLDS_PROTOCOL: ("encoder on target folds", "multiclass")}


def chosen(rows: list[dict], task: str) -> dict | None:
    """The row of ``task`` under the first decision rule of ``DECISION_PREFERENCE`` present."""
    by_decision = {r["decision"]: r for r in rows if r["task"] == task}
    for decision in DECISION_PREFERENCE:
        if decision in by_decision:
            top = by_decision[decision]
            return {"model": top["model"], "task": top["task"], "decision": decision,
                    **{k: round(top[k], 4) for k in ("weighted_f1", "ci_low", "ci_high", "macro_f1")}}
    return None


def run() -> dict:
    results, meta = chapter_results(CHAPTER, "full")
    encoder_rows = [r for r in results["results"] if "encoder" in r["model"]]
    if not all("protocol" in r for r in encoder_rows) or "collapsed" not in results:
        raise RuntimeError("the cached full run predates the protocol column or the collapse check of the prior "
                           "estimates: rerun it with CROWDLENS_BENCH_RERUN=1")
    whole_test = results.get("test_comments") == TEST_COMMENTS
    summary = {}
    for protocol in PROTOCOLS:
        model, five_class = HEADLINE[protocol]
        rows = [r for r in encoder_rows if r["protocol"] == protocol and r["model"] == model]
        summary[protocol] = {"binary": chosen(rows, "binary"), "five_class": chosen(rows, five_class)}
    paper = summary[PAPER_PROTOCOL]
    auc = {r["model"]: round(r["roc_auc"], 4) for r in results.get("binary_roc_auc", [])
           if r["protocol"] == PAPER_PROTOCOL}

    def value(result):  # a run on a sample of the test set cannot meet the target
        return result["weighted_f1"] if result and whole_test else None

    return {
        "profile": "full",
        "targets": {
            "paper_protocol_binary_weighted_f1": target(value(paper["binary"]), BINARY_GOAL, ">="),
            "paper_protocol_five_class_weighted_f1": target(value(paper["five_class"]), FIVE_CLASS_GOAL, ">="),
            "paper_protocol_binary_roc_auc": target(auc.get(HEADLINE[PAPER_PROTOCOL][0]) if whole_test else None,
                                                    ROC_AUC_AIM, ">="),
        },
        **run_metadata(meta),
        "paper_weighted_f1": PAPER,
        "test_comments": results.get("test_comments"),
        "floor_always_none": results["floor"],
        "by_protocol": summary,
        "collapsed_prior_estimates": results["collapsed"],
        "binary_roc_auc_paper_protocol": auc,
        "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in encoder_rows],
    }
