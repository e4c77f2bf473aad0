"""Scoring the political corpus at 10k / 100k / all rows: rows per second and peak memory.

Each size runs in a fresh process (peak RSS is per process) with an empty score cache,
streaming the parquet file through ``communities.score_parquet``. The target: throughput
roughly flat and memory bounded as the number of rows grows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from chapter_runs import target

SIZES = [10_000, 100_000, None]

CHILD = r"""
import json, resource, sys, time
from crowdlens import participation
from crowdlens.participation import communities as com
from crowdlens.data import table_path
limit = None if sys.argv[1] == "all" else int(sys.argv[1])
classifier = participation.load_classifier("participation")
scorer = com.ParticipationScorer(classifier, cache=sys.argv[2], progress=False)
started = time.perf_counter()
scored = com.score_parquet(table_path("reddit_political"), scorer, keep=["subreddit", "kind", "created_utc"],
                           limit=limit, progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"rows": len(scored), "seconds": round(seconds, 1), "rows_per_s": round(len(scored) / seconds, 1),
                  "classified_by_model": int(scorer.scored_by_model_),
                  "model_texts_per_s": round(scorer.scored_by_model_ / seconds, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def run() -> dict:
    results = []
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-c", CHILD, "all" if size is None else str(size),
                                  os.path.join(tmp, "scores.sqlite")], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(row, flush=True)
        results.append(row)
    rates = [r["rows_per_s"] for r in results]
    memory = [r["peak_rss_mib"] for r in results]
    return {
        "corpus": "reddit_political (282,243 rows)",
        "runs": results,
        "rows_per_s_ratio_all_vs_10k": round(rates[-1] / rates[0], 2),
        "peak_rss_ratio_all_vs_10k": round(memory[-1] / memory[0], 2),
        "targets": {"rows_per_s_ratio_all_vs_10k": target(round(rates[-1] / rates[0], 2), 0.5, ">="),
                    "peak_rss_ratio_all_vs_10k": target(round(memory[-1] / memory[0], 2), 2.0, "<=")},
    }
