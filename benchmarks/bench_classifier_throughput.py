"""Scoring throughput of the saved participation classifier on 2,000 real Reddit comments,
against the naive transformers.pipeline loop with batch size 1 (same weights, same machine).

Backends of the binary encoder: PyTorch fp32 (length-sorted dynamic batching under
inference_mode, batches of 64), PyTorch dynamic int8, and ONNX Runtime fp32 and int8
(per-channel weights; the last layer computes only the first token, which the head
reads; batches of 4, one per core at a time, each core with its own session) from
``ParticipationClassifier.to_onnx``; label agreement with PyTorch fp32 is
reported for each. Each backend scores the comments ``REPEATS`` times, taking turns
with the others, and the median rate counts (the shared 2-core machines have slow
spells). The layered five-class classifier is timed in fp32 and ONNX int8."""

from __future__ import annotations

import copy
import time

import torch

from crowdlens import data, encoders, explore, models

N_COMMENTS = 2000
REPEATS = 3


def comments() -> list[str]:
    political = data.load_reddit_political()
    political = political[political["kind"] == "comment"]
    texts = explore.reddit_text(political)
    texts = texts[texts.str.len() > 0]
    return explore.sample(texts.to_frame("text"), N_COMMENTS, seed=0)["text"].tolist()


def rate(fn, texts) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn(texts)
    return len(texts) / (time.perf_counter() - started), out


def run() -> dict:
    from transformers import pipeline

    torch.set_num_threads(2)
    texts = comments()
    classifier = models.load_classifier("participation")
    quantised = copy.copy(classifier.binary)
    quantised.model_ = torch.ao.quantization.quantize_dynamic(classifier.binary.model_, {torch.nn.Linear},
                                                             dtype=torch.qint8)
    onnx_int8 = classifier.to_onnx(quantize=True, threads=2)
    backends = {"pytorch fp32": classifier.binary, "pytorch int8": quantised,
                "onnxruntime fp32": classifier.to_onnx(quantize=False, threads=2).binary,
                "onnxruntime int8": onnx_int8.binary}
    table = encoders.throughput(backends, texts, repeats=REPEATS)  # each backend at its own batch size
    print(table.round(4).to_string(index=False))

    path = models.classifiers_cache_dir() / "participation" / "binary"
    naive_pipe = pipeline("text-classification", model=str(path), device=-1, truncation=True,
                          max_length=classifier.binary.max_length)
    naive, _ = rate(lambda t: [naive_pipe(x) for x in t], texts[:200])  # the slow loop on a tenth, scaled
    layered, fp32_labels = rate(lambda t: classifier.predict(t), texts)
    layered_int8, int8_labels = rate(lambda t: onnx_int8.predict(t), texts)
    speeds = dict(zip(table["backend"], table["comments_per_s"]))
    fastest = max(speeds, key=speeds.get)
    return {
        "comments": len(texts),
        "repeats": REPEATS,
        "threads": torch.get_num_threads(),
        "binary": table.round(4).to_dict("records"),
        "layered_fp32_comments_per_s": round(layered, 1),
        "layered_onnxruntime_int8_comments_per_s": round(layered_int8, 1),
        "layered_onnxruntime_int8_five_class_agreement": round(float((fp32_labels == int8_labels).mean()), 4),
        "naive_pipeline_batch1_comments_per_s": round(naive, 1),
        "fastest_backend": fastest,
        "fastest_comments_per_s": round(speeds[fastest], 1),
        "speedup_fp32_vs_naive": round(speeds["pytorch fp32"] / naive, 2),
        "speedup_fastest_vs_naive": round(speeds[fastest] / naive, 2),
        "target": ">= 3x the naive loop and >= 400 comments/s on 2 cores",
        "meets_target": bool(speeds[fastest] >= 400 and speeds[fastest] / naive >= 3),
    }
