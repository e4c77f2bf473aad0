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



DEVICE_CHAPTER = CHAPTER.replace('verbose = False\n', 'verbose = False\ndevice = "auto"\n')


def test_provenance_records_the_device_and_its_name(tiny_book):
    from crowdlens.core.device import cpu_model, resolve_device

    (book.chapters_src_dir() / "third.md").write_text(
        DEVICE_CHAPTER.format(title="Third", body="print('device', device)"))
    run = book.execute_chapter("third", profile="quick", overrides={"device": "cpu"}, progress=False)
    assert "device cpu" in outputs(run.notebook)
    meta = nbformat.read(run.notebook, as_version=4).metadata["crowdlens"]
    assert meta["device"] == "cpu" and meta["device_name"] == cpu_model()
    # a chapter without a device parameter records where "auto" resolves on this machine
    first = nbformat.read(book.execute_chapter("first", progress=False).notebook, as_version=4).metadata["crowdlens"]
    assert first["device"] == resolve_device("auto")
    page = book.write_provenance_page(["first", "third"]).read_text()
    assert f"- device: `cpu` ({cpu_model()})" in page


def test_a_bad_or_absent_device_stops_before_the_kernel(tiny_book, monkeypatch):
    import torch

    (book.chapters_src_dir() / "third.md").write_text(DEVICE_CHAPTER.format(title="Third", body="print(1)"))
    with pytest.raises(book.ParameterError, match="choose one of auto, cpu, cuda, cuda:N, mps"):
        book.execute_chapter("third", overrides={"device": "gpu"}, progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(book.BookError, match="sees no CUDA GPU"):
        book.execute_chapter("third", overrides={"device": "cuda"}, progress=False)
    assert not (book.executed_dir() / "third.ipynb").exists()


def test_the_cache_key_counts_an_accelerator_but_leaves_cpu_keys_as_they_were(tiny_book):
    data = {"table": "abc"}
    assert book.cache_key("first", {"n": 3}, data) == book.cache_key("first", {"n": 3}, data, "cpu")
    assert book.cache_key("first", {"n": 3}, data, "cuda") == book.cache_key("first", {"n": 3}, data, "cuda:1")
    assert book.cache_key("first", {"n": 3}, data, "cuda") != book.cache_key("first", {"n": 3}, data, "cpu")


def test_the_paper_profile_runs_the_papers_models_on_the_full_data():
    paper, full = book.PROFILES["paper"], book.PROFILES["full"]
    assert set(paper) == set(full)
    for chapter, parameters in paper.items():
        assert parameters["device"] == "cuda"
        # the full profile's data sizes: all of its values but the training epochs (the papers' 30)
        assert {k: v for k, v in full[chapter].items() if k != "epochs"}.items() <= parameters.items()
        # only parameters the chapter has
        assert set(parameters) <= set(book.chapter_parameters(chapter)), chapter
    assert paper["training"]["encoder_model"] == "roberta-base" and paper["training"]["epochs"] == 30
    assert paper["training"]["learning_rate"] == 4e-5 and paper["training"]["batch_size"] == 16
    assert paper["training"]["llm_model"] == paper["annotation"]["llm_model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert paper["weibo_crowds"]["llm_model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert paper["weibo_crowds"]["reply_users"] == full["weibo_crowds"]["reply_users"]


def test_the_paper_profile_needs_the_hub_and_a_gpu(monkeypatch):
    import torch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(book, "_cached_on_hub_cache", lambda model: False)
    monkeypatch.setattr(book, "_hub_reachable", lambda: False)
    with pytest.raises(book.BookError) as err:
        book.check_profile("paper", ["training", "weibo_crowds"])
    message = str(err.value)
    assert "cannot be reached" in message and "no CUDA GPU" in message and "weibo_crowds 80 GB" in message
    assert "Qwen/Qwen2.5-7B-Instruct" in message and "roberta-base" in message
    # every model already in the local cache: only the missing GPU is left to say
    monkeypatch.setattr(book, "_cached_on_hub_cache", lambda model: True)
    with pytest.raises(book.BookError) as err:
        book.check_profile("paper", ["annotation"])
    assert "cannot be reached" not in str(err.value) and "no CUDA GPU" in str(err.value)
    # with a GPU and the hub, it may start; other profiles are never refused
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(book, "_hub_reachable", lambda: True)
    monkeypatch.setattr(book, "_cached_on_hub_cache", lambda model: False)
    book.check_profile("paper", ["training"])
    book.check_profile("full", ["training"])


def test_a_progress_bar_drawn_in_a_cell_is_kept_as_its_last_state():
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"\repoch 1: {p}%") for p in (0, 50, 100)]
    cell.outputs += [nbformat.v4.new_output("stream", name="stderr", text="\n"),
                     nbformat.v4.new_output("stream", name="stdout", text="done\n")]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    outputs = book._coalesced(notebook).cells[0].outputs
    assert [(o.name, o.text) for o in outputs] == [("stderr", "epoch 1: 100%\n"), ("stdout", "done\n")]
