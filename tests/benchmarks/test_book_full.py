"""benchmarks/bench_book_full.py: a session that runs only some chapters in the full
profile carries the other chapters' runs over from the committed record, each with its
commit and machine, and the total counts only when every chapter has a run."""

from __future__ import annotations

import json

import nbformat
import pytest


@pytest.fixture()
def bench(load_benchmark, monkeypatch, tmp_path):
    module = load_benchmark("book_full")
    monkeypatch.setattr(module.book, "toc_chapters", lambda: ["data_tour", "weibo_crowds", "training"])
    monkeypatch.setattr(module, "RECORD", tmp_path / "book_full.json")
    monkeypatch.setenv("CROWDLENS_BENCH_CACHED_ONLY", "1")
    monkeypatch.delenv("CROWDLENS_BENCH_RERUN", raising=False)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["crowdlens"] = {"profile": "full", "seconds": 4000.0, "git_commit": "new"}
    fresh = tmp_path / "weibo_crowds-abc.ipynb"
    nbformat.write(notebook, fresh)
    monkeypatch.setattr(module, "latest_full_run", lambda name: fresh if name == "weibo_crowds" else None)
    return module


def record(tmp_path, chapters):
    old_machine = {"cpu": "Old CPU", "cores": 2, "flags": []}
    (tmp_path / "book_full.json").write_text(json.dumps({
        "machine": old_machine,
        "chapter_seconds": {name: seconds for name, seconds in chapters.items()},
        "chapter_runs": {name: (None if seconds is None else {"git_commit": "old", "started": "s", "finished": "f"})
                         for name, seconds in chapters.items()}}))


def test_chapters_not_run_now_are_carried_over_with_their_commit_and_machine(bench, tmp_path):
    record(tmp_path, {"data_tour": 20.0, "weibo_crowds": None, "training": 9000.0})
    result = bench.run()
    assert result["chapter_seconds"] == {"data_tour": 20.0, "weibo_crowds": 4000.0, "training": 9000.0}
    assert result["carried_over"] == ["data_tour", "training"] and result["not_measured"] == []
    assert result["chapter_runs"]["training"]["machine"]["cpu"] == "Old CPU"
    assert result["chapter_runs"]["training"]["carried_over"] is True
    assert result["chapter_runs"]["weibo_crowds"]["git_commit"] == "new"
    assert "carried_over" not in result["chapter_runs"]["weibo_crowds"]
    # 13,020 s is over the 3-hour goal
    assert result["targets"]["full_book_chapter_seconds"] == {"value": 13020.0, "goal": 10800,
                                                              "direction": "<=", "met": False}


def test_a_chapter_never_measured_leaves_the_total_unmeasured(bench, tmp_path):
    record(tmp_path, {"data_tour": 20.0, "weibo_crowds": None, "training": None})
    result = bench.run()
    assert result["not_measured"] == ["training"]
    assert result["targets"]["full_book_chapter_seconds"]["value"] is None
    assert result["targets"]["full_book_chapter_seconds"]["met"] is False
