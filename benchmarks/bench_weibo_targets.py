"""The Weibo chapter's targets, from its full-profile run (executed first when the cache
lacks it; one to two hours on 2 cores): emotion — the fine-tuned encoder's macro-F1 at
least 0.65 on virus-test and 0.50 on usual-eval (with bootstrap intervals); macro — the
best model's mean Jensen–Shannon divergence on held-out posts at least 30 % below the
global prior on both splits; micro — a personalised model beats LoRA without user
context on ROUGE-L and emotion agreement (paired bootstrap 95 % interval above zero),
and the generated replies read as replies: at most 5 % loop, distinct-2 within 0.15 of
the real replies'."""

from __future__ import annotations

import json
from pathlib import Path

from chapter_runs import chapter_results, run_metadata, target

CHAPTER = "weibo_crowds"


def run() -> dict:
    results, meta = chapter_results(CHAPTER, "full")
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
    # (c) against (b) is reported, with no target (runs before it was recorded: None)
    c_vs_b = {row["measure"]: {"difference": round(row["difference vs (b)"], 4),
                               "ci": [round(row["ci_low"], 4), round(row["ci_high"], 4)]}
              for row in results.get("paired_c_vs_b", [])} or None
    personalised = [m for m in micro if m.startswith(("(b", "(c"))]  # (b), (b+) copy-aware, (c)
    beats = {m: all(micro[m][k]["ci"][0] > 0 for k in ("rouge_l", "emotion_agrees")) for m in personalised}
    targets = {f"macro_js_reduction_{split}": target(v["reduction"], 0.30, ">=") for split, v in macro.items()}
    emotion = {(r["model"], r["test set"]): r for r in results["emotion"]}
    # the encoder's target is met by the model the chapter chose on virus-eval when it is
    # built on the encoder (the encoder alone or its average with TF-IDF), else the encoder
    chosen = results.get("chosen_emotion_model") or ""
    encoder = chosen if chosen.startswith("fine-tuned") else next(
        (m for m, _ in emotion if m.startswith("fine-tuned")), None)
    for test_set, goal in (("virus test", 0.65), ("usual eval", 0.50)):
        row = emotion.get((encoder, test_set), {})
        targets[f"emotion_encoder_macro_f1_{test_set.replace(' ', '_')}"] = target(
            None if not row else round(row["macro_f1"], 4), goal, ">=")
    # the paired comparisons count only on at least 300 held-out replies (runs before the
    # count was recorded leave it unknown: not met)
    held_out = results.get("held_out_replies")
    targets["micro_held_out_replies"] = target(held_out, 300, ">=")
    replies = {r["model"]: r for r in results["replies"]}
    real = replies.get("real replies", {})
    for model in [m for m in replies if m.startswith(("(a)", "(b)", "(c)"))]:  # the LMs' plain decoding
        row = replies[model]
        targets[f"replies_{model[:3]}_loop_share"] = target(
            None if row.get("loops") is None else round(row["loops"], 4), 0.05, "<=")
        gap = abs(row["distinct-2"] - real["distinct-2"]) if real else None
        targets[f"replies_{model[:3]}_distinct2_gap"] = target(None if gap is None else round(gap, 4), 0.15, "<=")
    for model in personalised:  # the lower end of the paired interval must be above zero
        for measure in ("rouge_l", "emotion_agrees"):
            targets[f"micro_{model}_{measure}_ci_low"] = target(micro[model][measure]["ci"][0], 0.0, ">=")
    # the chapter's time in both profiles: full from this run, quick from the quick-book benchmark
    quick_file = Path(__file__).resolve().parent / "results" / "book_quick.json"
    quick = json.loads(quick_file.read_text()) if quick_file.is_file() else {}
    quick_seconds = (quick.get("chapter_seconds") or {}).get(CHAPTER)
    targets["full_chapter_minutes"] = target(
        None if meta.get("seconds") is None else round(meta["seconds"] / 60, 1), 90, "<=")
    targets["quick_chapter_minutes"] = target(
        None if quick_seconds is None else round(quick_seconds / 60, 1), 6, "<=")
    return {
        "profile": "full",
        "quick_chapter_seconds_from": {"benchmark": "book_quick", "git_commit": quick.get("git_commit")},
        "targets": targets,
        **run_metadata(meta),
        "emotion": {f"{m} · {t}": {k: r.get(k) for k in ("macro_f1", "f1_low", "f1_high", "n")}
                    for (m, t), r in emotion.items()},
        "chosen_emotion_model": results.get("chosen_emotion_model"),
        "emotion_encoder_target_model": encoder,
        "labelling_model": results.get("labelling_model"),
        "student_agreement_with_chosen_model": results.get("student_agreement"),
        "replies": replies,
        "macro": macro,
        "macro_target": "best JS >= 30 % below the global prior",
        "macro_meets_target": {s: v["reduction"] >= 0.30 for s, v in macro.items()},
        "micro_vs_no_context": micro,
        "micro_target": "(b), (b+) or (c) beats (a) on ROUGE-L and emotion agreement (paired 95 % CI above 0)",
        "micro_meets_target": beats,
        "micro_pac_lora_vs_user_context_lora": c_vs_b,
    }
