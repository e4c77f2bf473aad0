"""crowdlens.book: parameters cells, validation, papermill execution, cache, failure
and resume, provenance — on tiny chapters written into a temporary book."""

from __future__ import annotations

import sys
import textwrap

import nbformat
import pytest
from conftest import MYST_HEADER

from crowdlens.book import runner as book

CHAPTER = MYST_HEADER + textwrap.dedent(
    """\

    # {title}

    ```{{code-cell}} ipython3
    :tags: [parameters]

    n = 2
    rate = 0.5
    label = "x"
    verbose = False
    ```

    ```{{code-cell}} ipython3
    {body}
    ```
    """
)


@pytest.fixture
def tiny_book(tmp_path, monkeypatch, isolated_cache):
    chapters, book_root = tmp_path / "chapters", tmp_path / "book"
    chapters.mkdir()
    book_root.mkdir()
    (book_root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/first\n  - file: chapters/second\n  - file: provenance\n"
    )
    (chapters / "first.md").write_text(CHAPTER.format(title="First", body="print('result', n * rate, label)"))
    (chapters / "second.md").write_text(CHAPTER.format(title="Second", body="assert n < 5, 'n too large'\nprint(n)"))
    monkeypatch.setattr(book, "chapters_src_dir", lambda: chapters)
    monkeypatch.setattr(book, "book_dir", lambda: book_root)
    monkeypatch.setattr(book, "PROFILES", {"quick": {"first": {"n": 3}}, "full": {}})
    return book_root


def outputs(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_parameters_are_read_from_the_tagged_cell(tiny_book):
    assert book.toc_chapters() == ["first", "second"]
    assert book.chapter_parameters("first") == {"n": 2, "rate": 0.5, "label": "x", "verbose": False}


@pytest.mark.parametrize(
    "overrides, expected",
    [({"n": "7"}, {"n": 7}), ({"rate": "1"}, {"rate": 1.0}), ({"label": "500"}, {"label": "500"}),
     ({"verbose": "True"}, {"verbose": True})],
)
def test_command_line_values_are_parsed_by_the_default_type(tiny_book, overrides, expected):
    assert book.validate_parameters("first", overrides) == expected


@pytest.mark.parametrize("overrides, fragment", [
    ({"m": "1"}, "has no parameter 'm'"),
    ({"n": "many"}, "must be int"),
    ({"n": "1.5"}, "must be int"),
    ({"verbose": "1"}, "must be bool"),
])
def test_bad_parameters_list_the_valid_ones(tiny_book, overrides, fragment):
    with pytest.raises(book.ParameterError) as err:
        book.validate_parameters("first", overrides)
    assert fragment in str(err.value) and "n = 2 (int)" in str(err.value) and "rate = 0.5 (float)" in str(err.value)


def test_unknown_chapter_and_profile(tiny_book):
    with pytest.raises(book.BookError, match="Chapters in the book: first, second"):
        book.chapter_source("third")
    with pytest.raises(book.ParameterError, match="quick, full"):
        book.profile_parameters("first", "huge")


def test_execute_records_provenance_and_caches(tiny_book):
    run = book.execute_chapter("first", profile="quick", overrides={"label": "y"}, progress=False)
    assert not run.cached and run.parameters == {"n": 3, "label": "y"}
    assert "result 1.5 y" in outputs(run.notebook)  # profile n=3, override label
    meta = nbformat.read(run.notebook, as_version=4).metadata["crowdlens"]
    assert meta["profile"] == "quick" and meta["parameters"] == {"n": 3, "label": "y"}
    assert meta["packages"]["papermill"] and meta["git_commit"] and meta["started"] <= meta["finished"]
    assert set(meta["data_sha256"]) <= set(__import__("crowdlens.data", fromlist=["TABLES"]).TABLES)

    again = book.execute_chapter("first", profile="quick", overrides={"label": "y"}, progress=False)
    assert again.cached
    changed = book.execute_chapter("first", profile="quick", overrides={"label": "z"}, progress=False)
    assert not changed.cached and "result 1.5 z" in outputs(changed.notebook)

    page = book.write_provenance_page().read_text()
    assert "## first" in page and "| `label` | `'z'` | `'x'` |" in page and "## second" in page


def test_only_runs_just_the_named_chapter_without_html(tiny_book):
    runs = book.build_book(profile="full", only=["second"], html=False, progress=False)
    assert [r.name for r in runs] == ["second"]
    assert not (tiny_book / "chapters" / "first.ipynb").exists()


def test_failure_shows_cell_and_traceback_then_resumes(tiny_book):
    with pytest.raises(book.ChapterFailed) as err:
        book.build_book(profile="full", overrides={"second": {"n": 9}}, html=False, progress=False)
    message = str(err.value)
    assert "chapter 'second' failed" in message and "AssertionError" in message and "n too large" in message
    assert err.value.notebook.is_file()  # the partly executed notebook is kept for inspection
    assert (tiny_book / "chapters" / "first.ipynb").is_file()  # the finished chapter is kept

    runs = book.build_book(profile="full", html=False, progress=False)  # fixed: default n=2
    assert [(r.name, r.cached) for r in runs] == [("first", True), ("second", False)]
    assert not err.value.notebook.exists()


def test_chapters_link_each_other_with_doc_roles():
    # the book renders the executed .ipynb, so a markdown link to another chapter's .md
    # has no target there (Sphinx only warns); {doc}`text <name>` resolves in both
    import re

    local_link = re.compile(r"\]\((?![a-z]+:)[^)]*\.(?:md|ipynb)(?:#[^)]*)?\)")
    sources = sorted(book.chapters_src_dir().glob("*.md")) + sorted(book.book_dir().glob("*.md"))
    assert sources, "no chapter sources found"
    offenders = [f"{path.name}:{number}: {line.strip()}" for path in sources
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if local_link.search(line)]
    assert not offenders, "use {doc}`text <chapter>` for links between chapters:\n" + "\n".join(offenders)


def test_a_missing_book_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "papermill", None)  # as if the book extra were not installed
    with pytest.raises(book.BookError, match=r"crowdlens\[book\]"):
        book.execute_chapter("data_tour")

