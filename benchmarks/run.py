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


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
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
