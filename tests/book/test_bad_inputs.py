"""Bad input at the command line gets a clear answer printed as it is (rows of the
hardening issue's table; more rows join this file as they are fixed)."""

from __future__ import annotations

from typer.testing import CliRunner

from crowdlens.cli import app

runner = CliRunner()


def test_messages_with_brackets_are_printed_literally_not_as_markup():
    # a closing tag "[/x]" crashed rich with MarkupError; "[bold]" vanished from the message
    for chapter in ["[/x]", "[bold]training"]:
        result = runner.invoke(app, ["run", chapter, "--no-html"])
        assert result.exit_code == 1, result.output
        assert f"no chapter '{chapter}'" in result.output and "MarkupError" not in result.output
    result = runner.invoke(app, ["params", "[bold]training"])
    assert result.exit_code == 1 and "no chapter '[bold]training'" in result.output


def test_a_parameter_value_with_brackets_is_echoed_literally():
    result = runner.invoke(app, ["run", "data_tour", "-p", "sample_rows", "[/x]", "--no-html"])
    assert result.exit_code == 1 and "[/x]" in result.output and "MarkupError" not in result.output


def test_usage_names_the_chapter_argument_in_capitals():
    for command in ["run", "params"]:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "CHAPTER" in result.output and "{chapter}" not in result.output


def test_a_list_parameter_accepts_the_spellings_a_shell_user_types():
    from crowdlens.book import runner as book

    defaults = {"target_tasks": ["binary", "multiclass"]}
    for spelling, expected in [("[multiclass]", ["multiclass"]), ("binary,multiclass", ["binary", "multiclass"]),
                               ('["binary"]', ["binary"]), ("[binary, multiclass]", ["binary", "multiclass"]),
                               ("multiclass", ["multiclass"]), ("[]", [])]:
        assert book.validate_parameters("training", {"target_tasks": spelling}, defaults) == {"target_tasks": expected}


def test_an_empty_list_value_says_how_to_write_a_list():
    result = runner.invoke(app, ["run", "training", "-p", "target_tasks", "", "--no-html"])
    assert result.exit_code == 1
    assert "needs a list" in result.output and "-p target_tasks binary,multiclass" in result.output


# Interrupted and concurrent runs: `python -m crowdlens run` in a subprocess on a tiny book
# (CROWDLENS_BOOK_ROOT) whose one chapter holds its cell until the test releases it.

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from conftest import MYST_HEADER

import nbformat
import pytest

LIB = Path(__file__).resolve().parents[2] / "lib"

# the kernel inherits the run's environment: SLEEPY_MARKER gets the kernel's pid once the cell
# runs; the cell then waits, up to `pause` seconds, for the file SLEEPY_RELEASE
SLEEPY = MYST_HEADER + """\

# Sleepy

```{code-cell} ipython3
:tags: [parameters]

n = 1
pause = 60.0
```

```{code-cell} ipython3
import os, pathlib, time

if os.environ.get("SLEEPY_MARKER"):
    pathlib.Path(os.environ["SLEEPY_MARKER"]).write_text(str(os.getpid()))
started = time.time()
while time.time() - started < pause and not pathlib.Path(os.environ.get("SLEEPY_RELEASE", "/nonexistent")).exists():
    time.sleep(0.1)
print("finished", n)
```
"""


@pytest.fixture
def sleepy_book(tmp_path):
    root = tmp_path / "bookroot"
    (root / "chapters").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "book" / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/sleepy\n")
    (root / "chapters" / "sleepy.md").write_text(SLEEPY)
    env = {**os.environ, "CROWDLENS_BOOK_ROOT": str(root), "CROWDLENS_CACHE": str(tmp_path / "cache"),
           "CROWDLENS_DATA": str(tmp_path / "no-data"),  # nothing to hash: the runs start faster
           "PYTHONPATH": os.pathsep.join([str(LIB), os.environ.get("PYTHONPATH", "")]),
           "SLEEPY_RELEASE": str(tmp_path / "release")}
    started: list[subprocess.Popen] = []
    yield SimpleNamespace(root=root, cache=tmp_path / "cache", tmp=tmp_path, env=env, started=started)
    for process in started:  # a failed test leaves no runner behind
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def start_run(book, tag: str, *params: str) -> subprocess.Popen:
    env = {**book.env, "SLEEPY_MARKER": str(book.tmp / f"{tag}.pid")}
    log = open(book.tmp / f"{tag}.log", "w")
    # SIGINT back to Python's default: pytest itself may run as a background job, which ignores it
    process = subprocess.Popen([sys.executable, "-m", "crowdlens", "run", "sleepy", "--no-html", *params],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log.close()
    book.started.append(process)
    return process


def kernel_pid(book, tag: str, process: subprocess.Popen, timeout: float = 120) -> int:
    """The pid the chapter's kernel writes once its cell runs."""
    marker, deadline = book.tmp / f"{tag}.pid", time.time() + timeout
    while time.time() < deadline:
        if marker.is_file() and marker.read_text():
            return int(marker.read_text())
        assert process.poll() is None, (book.tmp / f"{tag}.log").read_text()
        time.sleep(0.2)
    raise AssertionError(f"the chapter's cell did not start in {timeout} s")


def gone(pid: int, timeout: float = 20) -> bool:
    """The process has exited (a zombie that nobody reaped counts as gone)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.2)
    return False


def files_under(*folders: Path) -> list[str]:
    return sorted(str(p) for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file())


def test_ctrl_c_during_a_run_says_interrupted_exits_130_and_leaves_nothing_half_done(sleepy_book):
    run = start_run(sleepy_book, "run")
    kernel = kernel_pid(sleepy_book, "run", run)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130
    output = (sleepy_book.tmp / "run.log").read_text()
    lines = [line for line in output.splitlines() if "interrupted" in line]
    assert lines == ["interrupted: chapter 'sleepy' stopped before it finished and nothing of it was kept; "
                     "chapters that finished are kept in the cache, so the next run resumes from 'sleepy'"], output
    assert "Traceback" not in output and "ZMQError" not in output, output
    assert gone(kernel), "the chapter's kernel outlived the interrupted run"
    # no work notebook, no cache entry, no executed chapter, no temporary file
    left = files_under(sleepy_book.cache, sleepy_book.root)
    assert left == sorted(str(p) for p in [sleepy_book.cache / "book" / "data_sha256.json",
                                           sleepy_book.root / "book" / "_toc.yml",
                                           sleepy_book.root / "chapters" / "sleepy.md"]), left


def test_a_run_killed_outright_leaves_no_cache_entry_and_the_next_run_executes_afresh(sleepy_book):
    killed = start_run(sleepy_book, "killed")
    kernel = kernel_pid(sleepy_book, "killed", killed)
    killed.kill()  # SIGKILL: no handler runs, its work folder stays behind
    killed.wait(timeout=30)
    assert gone(kernel), "the orphaned kernel did not notice its runner was gone"  # ipykernel's parent poller
    assert not list((sleepy_book.cache / "book" / "chapters").glob("sleepy-*"))
    assert list((sleepy_book.cache / "book" / "work").iterdir())  # the killed run's work folder

    (sleepy_book.tmp / "release").touch()  # same parameters; the cell finishes at once
    resumed = start_run(sleepy_book, "resumed")
    assert resumed.wait(timeout=180) == 0, (sleepy_book.tmp / "resumed.log").read_text()
    output = (sleepy_book.tmp / "resumed.log").read_text()
    assert "sleepy: executed" in output and "cached" not in output, output
    assert not list((sleepy_book.cache / "book" / "work").iterdir())  # the dead run's folder is swept too
    [entry] = (sleepy_book.cache / "book" / "chapters").glob("sleepy-*.ipynb")
    cells = nbformat.read(entry, as_version=4).cells
    assert "finished 1" in "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))


def test_two_runs_of_one_chapter_at_once_each_cache_their_own_parameters(sleepy_book, monkeypatch):
    from crowdlens.book import runner as book

    runs = {n: start_run(sleepy_book, f"n{n}", "-p", "n", str(n)) for n in (1, 2)}
    for n, process in runs.items():
        kernel_pid(sleepy_book, f"n{n}", process)
    # both cells are running now: each run has its own work folder, not a shared work/sleepy.*.ipynb
    work = list((sleepy_book.cache / "book" / "work").iterdir())
    assert len(work) == 2 and all(folder.is_dir() for folder in work), work
    (sleepy_book.tmp / "release").touch()
    for n, process in runs.items():
        assert process.wait(timeout=180) == 0, (sleepy_book.tmp / f"n{n}.log").read_text()

    monkeypatch.setenv("CROWDLENS_BOOK_ROOT", str(sleepy_book.root))
    entries = sorted((sleepy_book.cache / "book" / "chapters").glob("sleepy-*.ipynb"))
    assert len(entries) == 2
    seen = set()
    for entry in entries:
        executed = nbformat.read(entry, as_version=4)
        meta = executed.metadata["crowdlens"]
        n = meta["parameters"]["n"]
        seen.add(n)
        # the entry's name is the key of its own parameters, and its notebook ran with them
        assert entry.name == f"sleepy-{book.cache_key('sleepy', meta['parameters'], meta['data_sha256'])}.ipynb"
        [injected] = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert f"n = {n}\n" in injected.source + "\n"
        assert f"finished {n}" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert seen == {1, 2}
    assert not list((sleepy_book.cache / "book" / "work").iterdir())


# Ranges and choices declared beside each parameter in the parameters cell, checked before a kernel starts.

DECLARED = MYST_HEADER + """\

# Declared

```{code-cell} ipython3
:tags: [parameters]

# a comment line of its own is free text
rows = 100  # [0, inf) rows sampled, 0 for all
share = 0.5  # [0, 1]
rate = 1e-3  # (0, inf)
below = 0.5  # [0, 1) an open end
folds = 5  # {0} or [2, inf)
column = "a"  # {"a", "b"}
tasks = ["a"]  # {"a", "b"}
grid = [1, 2]  # [1, 40]
note = 1  # (optional) a ( that opens no interval is free text
label = "x"  # a comment that opens with neither [ nor { is free text
```

```{code-cell} ipython3
print(rows)
```
"""


@pytest.fixture
def declared_book(tmp_path, monkeypatch, isolated_cache):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    (chapters / "declared.md").write_text(DECLARED)
    monkeypatch.setenv("CROWDLENS_BOOK_ROOT", str(tmp_path))
    return chapters / "declared.md"


def test_declarations_beside_the_parameters_are_read_from_their_trailing_comments(declared_book):
    from crowdlens.book import runner as book

    declared = {name: str(allowed) for name, allowed in book.chapter_allowed_values("declared").items()}
    assert declared == {"rows": ">= 0", "share": "in [0, 1]", "rate": "> 0", "below": "in [0, 1)",
                        "folds": "0 or >= 2", "column": "one of 'a', 'b'", "tasks": "one of 'a', 'b'",
                        "grid": "in [1, 40]"}


@pytest.mark.parametrize("overrides, fragment", [
    ({"rows": "-5"}, "parameter 'rows' of chapter 'declared' must be >= 0, got -5"),
    ({"share": "1.5"}, "must be in [0, 1], got 1.5"),
    ({"rate": "0"}, "must be > 0, got 0.0"),
    ({"below": "1"}, "must be in [0, 1), got 1.0"),
    ({"folds": "1"}, "must be 0 or >= 2, got 1"),
    ({"column": "c"}, "must be one of 'a', 'b', got 'c'"),
    ({"tasks": "a,c"}, "each element of parameter 'tasks' of chapter 'declared' must be one of 'a', 'b', got 'c'"),
    ({"grid": "[0, 3]"}, "each element of parameter 'grid' of chapter 'declared' must be in [1, 40], got 0"),
])
def test_a_value_outside_its_declared_range_or_choices_is_refused_naming_both(declared_book, overrides, fragment):
    from crowdlens.book import runner as book

    with pytest.raises(book.ParameterError) as err:
        book.validate_parameters("declared", overrides)
    assert fragment in str(err.value)
    key = next(iter(overrides))
    assert f"-p {key} " in str(err.value)  # the fix: a value in range, e.g. the default


def test_values_inside_the_declarations_pass(declared_book):
    from crowdlens.book import runner as book

    assert book.validate_parameters("declared", {"rows": "0", "share": "1", "folds": "0", "column": "b",
                                                 "tasks": "b,a", "grid": "[1, 40]"}) == {
        "rows": 0, "share": 1.0, "folds": 0, "column": "b", "tasks": ["b", "a"], "grid": [1, 40]}


@pytest.mark.parametrize("comment", ["# [free text]", "# [>= 0]", "# [0, x)", "# [0, 1", "# {}", "# [2, 1]",
                                     "# {1: 2}", "# [inf, 2]", "# [0, 1] or x"])
def test_a_declaration_that_does_not_parse_says_how_to_write_one(declared_book, comment):
    from crowdlens.book import runner as book

    # an opening [ or { promises a declaration: a typo there is an error, not free text
    declared_book.write_text(DECLARED.replace("# a comment that opens with neither [ nor { is free text", comment))
    with pytest.raises(book.BookError) as err:
        book.chapter_allowed_values("declared")
    message = str(err.value)
    assert "the parameters cell of chapter 'declared' declares 'label'" in message
    assert "[0, inf) (0 or more), (0, inf) (more than 0) or [0, 1]" in message
    assert '{"binary", "multiclass"}' in message and "{0} or [2, inf)" in message


def test_a_negative_sample_rows_is_refused_before_a_kernel_starts(monkeypatch):
    from crowdlens.book import runner as book

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel started")

    monkeypatch.setattr(book, "execute_chapter", no_kernel)
    result = runner.invoke(app, ["run", "data_tour", "-p", "sample_rows", "-5", "--no-html"])
    assert result.exit_code == 1, result.output
    assert "parameter 'sample_rows' of chapter 'data_tour' must be >= 0, got -5" in result.output
    assert "-p sample_rows 20000" in result.output


def test_every_profile_value_and_default_passes_its_chapters_declarations():
    from crowdlens.book import runner as book

    chapters = book.toc_chapters()
    assert set(chapters) >= {"data_tour", "annotation", "training", "reddit_communities", "weibo_crowds"}
    for name in chapters:
        defaults, allowed = book.chapter_parameters(name), book.chapter_allowed_values(name)
        assert allowed, f"chapter '{name}' declares no range or choices"
        assert set(allowed) <= set(defaults)
        book.validate_parameters(name, defaults, defaults, allowed)  # each default is inside its own declaration
        for profile, chapters_of in book.PROFILES.items():
            book.validate_parameters(name, chapters_of.get(name, {}), defaults, allowed)
    for profile, chapters_of in book.PROFILES.items():
        assert set(chapters_of) <= set(chapters), f"profile '{profile}' names a chapter the book does not have"


def test_papermill_reads_every_parameter_of_the_chapters_despite_their_declarations():
    # papermill skips, with "Passed unknown parameter", a parameters line holding a second "="
    # (a ">=" or "0 = all" in its comment): the declarations avoid "=" altogether
    from papermill.translators import PythonTranslator

    from crowdlens.book import runner as book

    for name in book.toc_chapters():
        notebook = book.read_notebook(name)
        cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        assert [p.name for p in PythonTranslator.inspect(cell)] == list(book.parameters_of(notebook)), name


def test_params_shows_the_declared_range_or_choices_of_each_parameter(monkeypatch):
    from crowdlens import cli

    monkeypatch.setattr(cli.console, "width", 200)  # one line a row: the assertions read whole cells
    result = runner.invoke(app, ["params", "training"])
    assert result.exit_code == 0, result.output
    assert "allowed" in result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "one of 'ActionFocusedText', 'OriginalText'" in rows["text_column"]
    assert "0 or >= 2" in rows["target_folds"] and "> 0" in rows["learning_rate"]
    assert "each one of 'binary', 'multiclass'" in rows["target_tasks"]
    assert rows["encoder_model"].split("│")[4].strip() == ""  # a hub id: no closed set
