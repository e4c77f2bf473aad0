"""Weighted F1 (95 % bootstrap CI) on the 809 test comments of the fine-tuned offline
encoder with the full-profile training settings: binary, and five-class both flat (one
five-way encoder) and layered (binary, then the four levels)."""

from __future__ import annotations

import time

from crowdlens import book, data, participation as part
from crowdlens.encoders import EncoderClassifier


def run() -> dict:
    settings = {**book.chapter_parameters("training"), **book.PROFILES["full"]["training"]}
    train, test = data.load_collective_action("train"), data.load_collective_action("test")
    column = settings["text_column"]

    def encoder():
        return EncoderClassifier(settings["encoder_model"], max_length=settings["max_length"], epochs=settings["epochs"],
                                 batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
                                 seed=settings["seed"], progress=True)

    started = time.perf_counter()
    binary_rows, binary_predictions, _, _ = part.run_model("encoder", encoder(), "binary", train, test, column,
                                                           settings["calibration_folds"], settings["seed"])
    flat_rows, _, _, _ = part.run_model("encoder", encoder(), "multiclass", train, test, column,
                                        settings["calibration_folds"], settings["seed"])
    _, levels, _, _ = part.run_model("encoder", encoder(), "levels", train, test, column)
    layered_rows, _ = part.layered_rows("encoder", binary_predictions, levels["raw"], test)
    seconds = time.perf_counter() - started
    result = {"settings": settings, "training_and_scoring_seconds": round(seconds, 1), "paper_weighted_f1": 0.71}
    for row in binary_rows + flat_rows + layered_rows:
        result[f"{row['task']} / {row['decision']}"] = {k: round(v, 4) for k, v in row.items()
                                                       if k in ("weighted_f1", "ci_low", "ci_high", "macro_f1")}
    best = {task: max(v["weighted_f1"] for k, v in result.items() if k.startswith(task + " /"))
            for task in ("binary", "multiclass", "layered")}
    result["best_weighted_f1"] = best
    result["meets_target"] = best["binary"] >= 0.71 and max(best["multiclass"], best["layered"]) >= 0.71
    return result
