"""Run the benchmarks: each ``bench_*.py`` here defines ``run() -> dict``.

Every result is printed and written to ``benchmarks/results/<name>.json`` (committed)
with the commit, date, profile and machine it ran on and its ``targets``, each
``{"value", "goal", "direction", "met"}`` (``target()`` in ``chapter_runs``). Benchmarks measure; they are not tests and never fail a build.

    python benchmarks/run.py                # all
    python benchmarks/run.py book_quick     # the ones whose name contains a word
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> dict:
    """The CPU model, its core count and the vector extensions int8 inference depends on:
    the same code scores about twice as fast with AVX-512 VNNI as on an AVX2-only host."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    flags = fields.get("flags", "").split()
    return {"cpu": fields.get("model name", platform.processor()), "cores": os.cpu_count(),
            "flags": sorted(f for f in flags if "vnni" in f or f in {"avx2", "avx512f", "amx_int8"}),
            "python": platform.python_version(), "platform": platform.platform()}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(selected: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if selected and not any(word in name for word in selected):
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {name}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}", flush=True)
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        measured = module.run()
        # the committed form: what ran, where, when, and each target with its goal and verdict
        result = {"benchmark": name, "git_commit": git_commit(), "date": started,
                  "profile": measured.pop("profile", None), "machine": machine(),
                  "targets": measured.pop("targets", {}), **measured}
        target = RESULTS / f"{name}.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(target)
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2, default=str))
        print(f"-> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
