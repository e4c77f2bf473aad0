"""Load a benchmark module (benchmarks/bench_<name>.py) the way benchmarks/run.py does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    """The module ``bench_<name>``, with its sibling ``chapter_runs`` importable while it loads."""
    sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their sibling chapter_runs
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"bench_{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("cpu_unchanged")``: a benchmark module, for its tests."""
    return _load
