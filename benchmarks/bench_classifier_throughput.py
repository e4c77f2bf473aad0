"""Scoring throughput of the saved participation classifier on 2,000 real Reddit comments,
against the naive transformers.pipeline loop with batch size 1 (same weights, same machine).

Backends: PyTorch fp32 (length-sorted dynamic batching under inference_mode), PyTorch
dynamic int8, and ONNX Runtime fp32 and int8 (per-channel weights) from
``ParticipationClassifier.to_onnx``. Agreement with fp32 is reported for the int8 ones."""

from __future__ import annotations

import copy
import time

import torch

from crowdlens import data, explore, models

N_COMMENTS = 2000


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
    binary = classifier.binary
    ours, probabilities = rate(lambda t: binary.predict_proba(t, batch_size=64), texts)

    quantised = copy.copy(binary)
    quantised.model_ = torch.ao.quantization.quantize_dynamic(binary.model_, {torch.nn.Linear}, dtype=torch.qint8)
    int8, q_probabilities = rate(lambda t: quantised.predict_proba(t, batch_size=64), texts)

    path = models.classifiers_cache_dir() / "participation" / "binary"
    naive_pipe = pipeline("text-classification", model=str(path), device=-1, truncation=True, max_length=binary.max_length)
    sample = texts[:200]  # the slow loop on a tenth of the texts, scaled
    naive, _ = rate(lambda t: [naive_pipe(x) for x in t], sample)
    layered, _ = rate(lambda t: classifier.predict(t, batch_size=64), texts)
    agree = float((probabilities.argmax(1) == q_probabilities.argmax(1)).mean())

    onnx_fp32 = classifier.to_onnx(quantize=False, threads=2).binary
    onnx_fp32.predict_proba(texts[:64])  # session warm-up (memory arenas), as a server would have
    ort32, ort32_probabilities = rate(lambda t: onnx_fp32.predict_proba(t, batch_size=64), texts)
    onnx_classifier = classifier.to_onnx(quantize=True, threads=2)
    onnx_classifier.binary.predict_proba(texts[:64])
    ort8, ort8_probabilities = rate(lambda t: onnx_classifier.binary.predict_proba(t, batch_size=64), texts)
    layered_ort8, layered_labels = rate(lambda t: onnx_classifier.predict(t, batch_size=64), texts)
    _, fp32_labels = rate(lambda t: classifier.predict(t, batch_size=64), texts[:500])
    backends = {"pytorch fp32": ours, "pytorch int8": int8, "onnxruntime fp32": ort32, "onnxruntime int8": ort8}
    fastest = max(backends, key=backends.get)
    return {
        "comments": len(texts),
        "threads": torch.get_num_threads(),
        "binary_fp32_comments_per_s": round(ours, 1),
        "binary_int8_comments_per_s": round(int8, 1),
        "int8_agreement_with_fp32": round(agree, 4),
        "binary_onnxruntime_fp32_comments_per_s": round(ort32, 1),
        "onnxruntime_fp32_max_abs_difference": float(abs(ort32_probabilities - probabilities).max()),
        "binary_onnxruntime_int8_comments_per_s": round(ort8, 1),
        "onnxruntime_int8_agreement_with_fp32": round(float((ort8_probabilities.argmax(1) == probabilities.argmax(1)).mean()), 4),
        "layered_fp32_comments_per_s": round(layered, 1),
        "layered_onnxruntime_int8_comments_per_s": round(layered_ort8, 1),
        "layered_onnxruntime_int8_five_class_agreement_with_fp32": round(float((layered_labels[:500] == fp32_labels).mean()), 4),
        "naive_pipeline_batch1_comments_per_s": round(naive, 1),
        "fastest_backend": fastest,
        "speedup_fp32_vs_naive": round(ours / naive, 2),
        "speedup_fastest_vs_naive": round(backends[fastest] / naive, 2),
        "target": ">= 3x the naive loop and >= 400 comments/s on 2 cores",
        "meets_target": bool(backends[fastest] >= 400 and backends[fastest] / naive >= 3),
    }
