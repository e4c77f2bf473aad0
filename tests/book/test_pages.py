"""The generated pages: key results read back from executed chapters, and the
performance page drawn from benchmark JSON files (tiny books and hand-made files)."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
from conftest import MYST_HEADER

from crowdlens.book import pages
from crowdlens.book import runner as book
from crowdlens.core.key_results import KEY_RESULTS_MIME, KeyResult, read_key_results

PUBLISHING_CHAPTER = MYST_HEADER + textwrap.dedent(
    """\

    # Tiny

    ```{code-cell} ipython3
    :tags: [parameters]

    n = 2
    ```

    ```{code-cell} ipython3
    :tags: [remove-cell]

    from crowdlens.core.key_results import KeyResult, publish

    publish([KeyResult("participation", "weighted F1, five classes", n * 0.25, "tiny-results",
                       ci_low=n * 0.2, ci_high=n * 0.3, paper="0.71", protocol="no test labels",
                       model="toy", n=40)])
    ```
    """
)


@pytest.fixture
def publishing_book(tmp_path, monkeypatch, isolated_cache):
    chapters, book_root = tmp_path / "chapters", tmp_path / "book"
    chapters.mkdir()
    book_root.mkdir()
    (book_root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/tiny\n  - file: chapters/silent\n")
    (chapters / "tiny.md").write_text(PUBLISHING_CHAPTER)
    (chapters / "silent.md").write_text(PUBLISHING_CHAPTER.replace("# Tiny", "# Silent"))
    monkeypatch.setattr(book, "chapters_src_dir", lambda: chapters)
    monkeypatch.setattr(book, "book_dir", lambda: book_root)
    monkeypatch.setattr(book, "PROFILES", {"quick": {"tiny": {"n": 3}}, "full": {}})
    return book_root


def test_key_results_page_shows_what_the_chapter_computed(publishing_book):
    book.execute_chapter("tiny", profile="quick", progress=False)  # "silent" never runs
    key_page, performance_page = book.write_generated_pages()
    text = key_page.read_text()
    # n = 3 from the quick profile: the page carries the executed value, not the default's 0.500
    row = next(line for line in text.splitlines() if "weighted F1, five classes" in line)
    assert "0.750 [0.600, 0.900]" in row and "0.71" in row and "no test labels" in row and "toy" in row
    assert "{ref}`tiny-results`" in row and "quick · `" in row and "| 40 |" in row
    assert "quick profile" in text and "samples" in text  # said plainly
    assert "No chapter of this study was executed" in text  # the crowd-response study published nothing
    assert "Not executed in this build: silent" in text
    assert performance_page.name == "performance.md" and performance_page.is_file()


def test_key_results_round_trip_and_refuse_bad_values():
    result = KeyResult("crowd response", "macro-F1", float("nan"), "sec")
    assert result.formatted() == "not computed"
    cell = {"outputs": [{"data": {KEY_RESULTS_MIME: [result.to_json()], "text/plain": "x"}}]}
    json.dumps(cell, allow_nan=False)  # NaN travels as null
    back = read_key_results([cell, {"outputs": [{"text": "no data"}]}])
    assert len(back) == 1 and math.isnan(back[0].value) and back[0].section == "sec"
    assert KeyResult("participation", "F1", 0.5, "s", digits=2).formatted() == "0.50"
    with pytest.raises(ValueError, match="section"):
        KeyResult("participation", "F1", 0.5, "")
    with pytest.raises(ValueError, match="both ends"):
        KeyResult("participation", "F1", 0.5, "s", ci_low=0.4)
    with pytest.raises(TypeError, match="float"):
        KeyResult("participation", "F1", "0.5", "s")
    with pytest.raises(ValueError, match="participation"):
        KeyResult("elections", "F1", 0.5, "s")


def _write(folder, name, result):
    (folder / f"{name}.json").write_text(json.dumps(result))


def test_performance_page_draws_what_was_measured(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    machine = {"cpu": "Test CPU", "cores": 2, "flags": ["avx2"]}
    _write(results, "book_quick", {
        "benchmark": "book_quick", "git_commit": "abcdef1234567", "date": "2026-12-02", "profile": "quick",
        "machine": machine, "chapter_seconds": {"data_tour": 10.0, "training": 120.0},
        "targets": {"quick_book_seconds": {"value": 500.0, "goal": 480, "direction": "<=", "met": False}},
        "slowest_cells": [{"chapter": "training", "seconds": 60.0, "cell": "experiment.run(...)"}]})
    _write(results, "classifier_throughput", {
        "benchmark": "classifier_throughput", "git_commit": "1234567abcdef", "date": "2026-12-01",
        "profile": None, "machine": machine,
        "binary": [{"backend": "pytorch fp32", "comments_per_s": 120.0},
                   {"backend": "onnxruntime int8", "comments_per_s": 300.0}],
        "naive_pipeline_batch1_comments_per_s": 40.0,
        "targets": {"fastest_comments_per_s": {"value": 300.0, "goal": 400, "direction": ">=", "met": False}}})
    (results / "broken.json").write_text("{not json")
    target = pages.write_performance_page(tmp_path / "book" / "performance.md", results)
    text = target.read_text()
    for figure in ("chapters.png", "throughput.png"):
        png = tmp_path / "book" / "performance" / figure
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"```{{figure}} performance/{figure}" in text
    assert "not measured on this checkout yet (`python benchmarks/run.py community_scoring`)" in text
    assert "| book_quick | quick_book_seconds | 500.0 | <= 480 | **not met** |" in text
    assert "Test CPU" in text and "`abcdef1234`" in text and "broken.json could not be read" in text
    assert "experiment.run(...)" in text  # the slowest cells
    empty = pages.write_performance_page(tmp_path / "other" / "performance.md", tmp_path / "missing")
    assert "No benchmark has been run" in empty.read_text()
