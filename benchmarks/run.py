"""Run the benchmarks: each ``bench_*.py`` here defines ``run() -> dict``.

Every result is printed and written to ``benchmarks/results/<name>.json`` with the
machine it ran on. Benchmarks measure; they are not tests and never fail a build.

    python benchmarks/run.py                # all
    python benchmarks/run.py book_quick     # the ones whose name contains a word
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def cpu() -> dict:
    """The CPU model and the vector extensions int8 inference depends on: the same code
    scores about twice as fast with AVX-512 VNNI as on an AVX2-only host."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor()}
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    flags = fields.get("flags", "").split()
    return {"model": fields.get("model name", ""),
            "int8_extensions": sorted(f for f in flags if "vnni" in f or f in {"avx2", "avx512f", "amx_int8"})}


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": cpu(),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


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
        result = {"benchmark": name, "machine": machine(), **module.run()}
        target = RESULTS / f"{name}.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(target)
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2, default=str))
        print(f"-> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
