"""The book runner: MyST chapters → executed notebooks (papermill) → Jupyter Book HTML.

A profile (``quick``, ``full`` or ``paper``) maps to each chapter's parameters in one
place, ``PROFILES``. Each executed chapter records its provenance (parameters, profile,
the device it ran on and its name, data sha256s, package versions, git commit,
start/end time) in its notebook metadata, and ``write_provenance_page`` gathers them
into an appendix page. The ``paper`` profile runs the papers' models from the Hugging
Face hub on a CUDA GPU; ``check_profile`` refuses it before any kernel starts where it
cannot run.
A chapter whose source, parameters, ``crowdlens`` code and data are unchanged
is taken from the cache instead of being run again.

The book is the checkout's ``chapters/`` and ``book/``; ``CROWDLENS_BOOK_ROOT`` points the
runner at another folder holding those two (the tests' tiny books, run as a subprocess).
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tokenize
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crowdlens.book import pages
from crowdlens.core.config import PACKAGE_DIR, atomic_path, cache_dir, git_commit, project_root, sha256_file
from crowdlens.core.device import DeviceNotAvailableError, check_device_name, device_description, resolve_device
from crowdlens.data.registry import TABLES, data_dir

#: The papers' models (Hugging Face hub ids) that the ``paper`` profile runs: RoBERTa and
#: Llama 3 8B for participation (Pera & Aiello), Qwen2.5 7B for the Weibo replies.
PAPER_ENCODER = "roberta-base"
PAPER_LLM = "meta-llama/Meta-Llama-3-8B-Instruct"
PAPER_REPLY_LLM = "Qwen/Qwen2.5-7B-Instruct"
#: Chapter parameters that name a model: what the ``paper`` profile needs from the hub.
MODEL_PARAMETERS = ("encoder_model", "llm_model", "reply_model")
#: GPU memory (GB) the ``paper`` profile needs per chapter, with the models in bf16 as the
#: chapters load them (estimates: weights plus LoRA training; weibo_crowds holds three 7B
#: reply models and the 7B classifier at once).
PAPER_GPU_MEMORY_GB = {"annotation": 24, "training": 40, "reddit_communities": 8, "weibo_crowds": 80}

_FULL: dict[str, dict[str, Any]] = {
    "data_tour": {"sample_rows": 0},
    "annotation": {"crowd_items": 0, "repetitions": 3, "llm_sample": 0},
    "training": {"train_rows": 0, "epochs": 4, "max_length": 128, "n_boot": 1000, "llm_sample": 200,
                 "encoder_ablation": True, "sft_rows": 400, "dpo_rows": 200, "llm_tuned_test": 200},
    "reddit_communities": {"sample_rows": 0, "classifier_train_rows": 0, "n_boot": 1000, "topic_sample": 6000,
                           "n_topics": 20},
    "weibo_crowds": {"lm_classifier_rows": 400, "lm_classifier_epochs": 1, "lm_eval_rows": 300, "post_sample": 0,
                     "lm_feature_length": 64, "reply_users": 400, "reply_steps": 80, "reply_test": 300,
                     "crowd_posts": 10, "crowd_repliers": 10, "n_boot": 1000},
}

#: What the ``paper`` profile changes in the full one: the papers' models and training
#: settings, on a CUDA GPU (SFT/DPO keep the library's LoRA r = 8, alpha = 16, the papers').
_PAPER_MODELS: dict[str, dict[str, Any]] = {
    "annotation": {"llm_model": PAPER_LLM},
    "training": {"encoder_model": PAPER_ENCODER, "epochs": 30, "learning_rate": 4e-5, "batch_size": 16,
                 "llm_model": PAPER_LLM},
    "weibo_crowds": {"llm_model": PAPER_REPLY_LLM, "reply_model": PAPER_REPLY_LLM},
}

#: The one place where a profile becomes chapter parameters. Chapters missing
#: here run with the defaults of their ``parameters`` cell.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        # the quick book is a class's first build: the goal is 8 minutes on 2 cores; 5.3 measured last
        # (benchmarks/results/book_quick.json; 7.9 to 8.6 on an older, slower machine). Every step runs
        # on a sample; the language-model rows are smoke tests on a few comments, kept out of the
        # results tables.
        "data_tour": {"sample_rows": 20_000},
        "annotation": {"crowd_items": 100, "repetitions": 1, "llm_sample": 16, "annotator_grid": [1, 3, 5, 9],
                       "spammer_grid": [0.0, 0.2, 0.4]},
        "training": {"train_rows": 200, "test_rows": 300, "frozen_encoders": ["minilm"], "epochs": 1,
                     "max_length": 64, "n_boot": 200, "held_out_folds": 2, "llm_sample": 12,
                     "encoder_ablation": False, "sft_rows": 6, "dpo_rows": 4, "llm_tuned_test": 6,
                     "target_folds": 2, "target_tasks": ["multiclass"]},
        "reddit_communities": {"sample_rows": 8_000, "classifier_train_rows": 200, "classifier_epochs": 1,
                               "classifier_max_length": 64,
                               "n_boot": 200, "topic_sample": 800, "n_topics": 6},
        "weibo_crowds": {"lm_classifier_rows": 0, "emotion_encoder_epochs": 0, "macro_encoder": "",
                         "reply_model": "smollm2",
                         "post_sample": 200, "lm_feature_length": 32, "reply_users": 80,
                         "reply_steps": 2, "reply_batch_size": 2, "reply_test": 4, "history_k": 3, "crowd_posts": 2,
                         "crowd_repliers": 4, "n_boot": 200},
    },
    "full": _FULL,
    # the full profile's data sizes with the papers' models, on a CUDA GPU: see check_profile
    "paper": {name: {**params, **_PAPER_MODELS.get(name, {}), "device": "cuda"} for name, params in _FULL.items()},
}

RECORDED_PACKAGES = [
    "crowdlens", "numpy", "pandas", "pyarrow", "scikit-learn", "statsmodels", "seaborn", "matplotlib",
    "torch", "transformers", "peft", "trl", "bitsandbytes", "sentence-transformers", "papermill", "jupytext",
    "jupyter-book",
]


class BookError(RuntimeError):
    pass


class ParameterError(BookError, ValueError):
    pass


class ChapterFailed(BookError):
    def __init__(self, chapter: str, message: str, notebook: Path):
        self.chapter, self.notebook = chapter, notebook
        super().__init__(message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a build or a run, with the one line to tell the user.

    Still a KeyboardInterrupt, so that ``except Exception`` in a caller does not swallow it.
    """

    def __init__(self, chapter: str | None = None):
        self.chapter = chapter
        where = (f"chapter '{chapter}' stopped before it finished and nothing of it was kept"
                 if chapter else "the build stopped")
        resume = f" from '{chapter}'" if chapter else ""
        super().__init__(f"interrupted: {where}; chapters that finished are kept in the cache, "
                         f"so the next run resumes{resume}")


#: How to get what the runner needs beyond the library (the ``book`` extra of pyproject.toml).
BOOK_EXTRA = "pip install 'crowdlens[book]' (`make setup` installs it)"


def _book_module(name: str):
    """Import one of the book extra's packages, or say how to install them."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BookError(f"the book runner needs {name}, part of the book extra: {BOOK_EXTRA}") from exc


# Layout ------------------------------------------------------------------------------

def _root() -> Path:
    env = os.environ.get("CROWDLENS_BOOK_ROOT")
    if env:  # another book (a test's tiny one); only chapters/ and book/ move, the code stays this checkout's
        root = Path(env).expanduser()
        if not (root / "chapters").is_dir():
            raise BookError(f"CROWDLENS_BOOK_ROOT={env} has no chapters/ folder: point it at a folder holding "
                            f"chapters/ and book/, or unset it to use the checkout's book")
        return root
    root = project_root()
    if root is None:
        raise BookError("the book runner needs the CrowdLens source checkout (chapters/ and book/)")
    return root


def book_dir() -> Path:
    return _root() / "book"


def chapters_src_dir() -> Path:
    return _root() / "chapters"


def executed_dir() -> Path:
    """Where Jupyter Book reads the executed chapters (``book/chapters``)."""
    return book_dir() / "chapters"


def html_dir() -> Path:
    return book_dir() / "_build" / "html"


def toc_chapters() -> list[str]:
    """Chapter names in book order, from ``book/_toc.yml`` entries under ``chapters/``."""
    toc = yaml.safe_load((book_dir() / "_toc.yml").read_text())
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            file = node.get("file")
            if isinstance(file, str) and file.startswith("chapters/"):
                names.append(file.split("/", 1)[1].removesuffix(".ipynb").removesuffix(".md"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return names


def chapter_source(name: str) -> Path:
    path = chapters_src_dir() / f"{name}.md"
    if not path.is_file():
        known = ", ".join(toc_chapters()) or "(none)"
        raise BookError(f"no chapter '{name}': expected {path}. Chapters in the book: {known}")
    return path


# Parameters --------------------------------------------------------------------------

def read_notebook(name: str):
    return _book_module("jupytext").read(chapter_source(name))


def _parameters_cell(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return cell
    raise BookError("the chapter has no code cell tagged 'parameters'")


def _assignments(source: str):
    """``(name, node)`` of each ``name = <literal>`` (or ``name: type = <literal>``) statement."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            yield node.targets[0].id, node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target.id, node


def parameters_of(notebook) -> dict[str, Any]:
    """Defaults of the cell tagged ``parameters``: ``name = <literal>`` lines."""
    return {name: ast.literal_eval(node.value) for name, node in _assignments(_parameters_cell(notebook).source)}


@dataclass(frozen=True)
class Allowed:
    """The values a parameter's declaration admits (each element's, for a list parameter).

    ``ranges`` are intervals ``(low, low_open, high, high_open)``, a bound None when unbounded;
    ``choices`` single values; a value is admitted by any of them. ``declaration`` is the text
    as the parameters cell writes it.
    """

    declaration: str
    ranges: tuple = ()
    choices: tuple = ()

    def admits(self, value: Any) -> bool:
        if any(_same(value, choice) for choice in self.choices):
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return any((low is None or (value > low if low_open else value >= low))
                   and (high is None or (value < high if high_open else value <= high))
                   for low, low_open, high, high_open in self.ranges)

    def __str__(self) -> str:
        words = []
        if len(self.choices) == 1:
            words.append(repr(self.choices[0]))
        elif self.choices:
            words.append("one of " + ", ".join(map(repr, self.choices)))
        for low, low_open, high, high_open in self.ranges:
            if high is None:
                words.append(f"{'>' if low_open else '>='} {low!r}" if low is not None else "any number")
            elif low is None:
                words.append(f"{'<' if high_open else '<='} {high!r}")
            else:
                words.append(f"in {'(' if low_open else '['}{low!r}, {high!r}{')' if high_open else ']'}")
        return " or ".join(words)


def _same(value: Any, choice: Any) -> bool:
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if number(value) and number(choice):
        return value == choice
    return type(value) is type(choice) and value == choice


_DECLARATION_HINT = ("write a range such as [0, inf) (0 or more), (0, inf) (more than 0) or [0, 1], "
                     'choices such as {"binary", "multiclass"}, or both joined by or: {0} or [2, inf)')
_DECLARATION_PART = r"\{[^}]*\}|[\[(][^\])]*[\])]"
_DECLARATION = re.compile(rf"#\s*((?:{_DECLARATION_PART})(?:\s+or\s+(?:{_DECLARATION_PART}))*)(?=\s|$)")
_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")


def _bound(text: str) -> int | float | None:
    """A number of an interval; None for ``inf`` or ``-inf``, an unbounded end."""
    if text.lstrip("+-") == "inf":
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(text)
    return value


def _parse_allowed(declaration: str) -> Allowed:
    """``Allowed`` of a declaration; ValueError when it does not parse."""
    ranges, choices = [], []
    for part in re.split(r"\s+or\s+", declaration):
        if part.startswith("{"):
            try:
                values = ast.literal_eval(part)
            except (ValueError, SyntaxError):
                raise ValueError(part) from None
            if not isinstance(values, set) or not values:
                raise ValueError(part)
            choices += sorted(values, key=repr)
            continue
        interval = _INTERVAL.fullmatch(part)
        if interval is None:
            raise ValueError(part)
        opening, low, high, closing = interval.groups()
        low_value, high_value = _bound(low), _bound(high)
        if (low_value is None and not low.startswith("-")) or (high_value is None and high.startswith("-")):
            raise ValueError(part)  # inf as a lower end, -inf as an upper one
        if low_value is not None and high_value is not None and low_value > high_value:
            raise ValueError(part)
        ranges.append((low_value, opening == "(", high_value, closing == ")"))
    return Allowed(declaration, ranges=tuple(ranges), choices=tuple(choices))


def allowed_values_of(notebook, chapter: str = "") -> dict[str, Allowed]:
    """The declarations of the parameters cell: a trailing comment that opens with a range or
    choices says which values a parameter takes, checked before any kernel starts::

        sample_rows = 20000  # [0, inf) rows drawn from each corpus, 0 for all
        spammer_share = 0.1  # [0, 1]
        learning_rate = 5e-5  # (0, inf)
        target_folds = 5  # {0} or [2, inf) folds of the test set, 0 to skip
        text_column = "ActionFocusedText"  # {"ActionFocusedText", "OriginalText"}

    A range is an interval, ``[`` and ``]`` including their end, ``(`` and ``)`` excluding it,
    ``inf`` for no bound; choices are a Python set of literals; ``or`` joins several. For a
    list parameter each element must be admitted. Text after the declaration is free, and so
    is a comment that opens otherwise, or with a ``(`` that is no interval; one that opens
    with ``[`` or ``{`` must parse, so that a typo cannot silently drop a check.

    No ``=`` in these comments (hence no ``>=``): papermill reads each line of the cell as
    ``name = value  # help`` and skips, with a warning, a line with a second ``=``.
    """
    source = _parameters_cell(notebook).source
    cell = f"the parameters cell of chapter '{chapter}'" if chapter else "the parameters cell"
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments.setdefault(token.start[0], token.string)
    allowed = {}
    for name, node in _assignments(source):
        comment = next((comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments), "")
        opening = comment.lstrip("#").lstrip()[:1]
        if opening not in ("[", "{", "("):
            continue
        declaration = _DECLARATION.match(comment)
        try:
            if declaration is None or re.match(r"\s+or\b", comment[declaration.end():]):
                raise ValueError(comment)  # none, or a part after "or" that is none
            allowed[name] = _parse_allowed(declaration.group(1))
        except ValueError:
            if opening == "(":  # "(optional)" and the like: free text
                continue
            raise BookError(f"{cell} declares '{name}' as {comment.lstrip('#').strip()!r}, which is neither "
                            f"a range nor choices: {_DECLARATION_HINT}") from None
    return allowed


def chapter_parameters(name: str) -> dict[str, Any]:
    return parameters_of(read_notebook(name))


def chapter_allowed_values(name: str) -> dict[str, Allowed]:
    return allowed_values_of(read_notebook(name), name)


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal when it parses as one, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_list(text: str, name: str) -> list:
    """A list from the command line: a Python literal (``'["binary", "multiclass"]'``), or
    words in brackets or separated by commas (``[multiclass]``, ``binary,multiclass``)."""
    value = parse_value(text)
    if isinstance(value, list):
        return value
    words = [w.strip().strip("'\"") for w in text.strip().removeprefix("[").removesuffix("]").split(",")]
    words = [w for w in words if w]
    if not words and text.strip() not in ("[]", ""):
        words = [text.strip()]
    if not words and text.strip() == "":
        raise ParameterError(
            f"parameter '{name}' needs a list, got an empty value (the shell may have expanded [...] as a file "
            f"pattern): write -p {name} binary,multiclass or quote it, -p {name} '[\"binary\", \"multiclass\"]'")
    return [parse_value(w) if not isinstance(parse_value(w), str) else w for w in words]


def _type_ok(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _check_allowed(name: str, key: str, value: Any, default: Any, allowed: Allowed) -> None:
    items = value if isinstance(value, list) else [value]
    bad = [item for item in items if not allowed.admits(item)]
    if not bad:
        return
    if isinstance(value, list):
        what, got = f"each element of parameter '{key}'", f"got {bad[0]!r} in {value!r}"
        spelled = ",".join(map(str, default))
    else:
        what, got, spelled = f"parameter '{key}'", f"got {value!r}", str(default)
    raise ParameterError(
        f"{what} of chapter '{name}' must be {allowed}, {got} (the chapter's parameters cell declares "
        f"`{key} = {default!r}  # {allowed.declaration}`). Pass a value that is {allowed}, "
        f"e.g. the default: -p {key} {shlex.quote(spelled)}"
    )


def validate_parameters(name: str, overrides: dict[str, Any], defaults: dict[str, Any] | None = None,
                        allowed: dict[str, Allowed] | None = None) -> dict[str, Any]:
    """Check names, types and declared ranges or choices against the chapter's parameters cell;
    returns coerced values.

    String values from the command line are parsed (``"500"`` → 500) unless the
    parameter is itself a string; a ``device`` must be one of the device names. Without
    ``defaults`` both the defaults and the declarations (``allowed_values_of``) are read
    from the chapter; with ``defaults`` only the ``allowed`` given are checked.
    """
    if defaults is None:
        notebook = read_notebook(name)
        defaults = parameters_of(notebook)
        allowed = allowed_values_of(notebook, name) if allowed is None else allowed
    allowed = allowed or {}
    listing = "; ".join(f"{k} = {v!r} ({type(v).__name__})" for k, v in defaults.items())
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in defaults:
            raise ParameterError(f"chapter '{name}' has no parameter '{key}'. Valid parameters: {listing}")
        default = defaults[key]
        if isinstance(value, str) and isinstance(default, list):
            value = parse_list(value, key)
        elif isinstance(value, str) and not isinstance(default, str):
            value = parse_value(value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _type_ok(default, value):
            raise ParameterError(
                f"parameter '{key}' of chapter '{name}' must be {type(default).__name__}, "
                f"got {value!r} ({type(value).__name__}). Valid parameters: {listing}"
            )
        if key in allowed:
            _check_allowed(name, key, value, default, allowed[key])
        if key == "device":
            try:
                value = check_device_name(value)
            except ValueError as exc:
                raise ParameterError(f"parameter 'device' of chapter '{name}': {exc}") from exc
        checked[key] = value
    return checked


def profile_parameters(name: str, profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[profile].get(name, {}))


# Devices and the hub -----------------------------------------------------------------

def chapter_device(name: str, parameters: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The device a chapter will run on (its ``device`` parameter, resolved on this
    machine: the kernel resolves the same name the same way); a clear error before any
    kernel starts when that device is unknown or absent."""
    requested = parameters.get("device", defaults.get("device", "auto"))
    try:
        return resolve_device(requested)
    except DeviceNotAvailableError as exc:
        raise BookError(f"chapter '{name}': {exc}") from exc
    except ValueError as exc:
        raise ParameterError(f"chapter '{name}': {exc}") from exc


#: Where the hub is checked from (``HF_ENDPOINT`` names a mirror), and how long to wait.
HUB_TIMEOUT_S = 3.0


def _hub_offline() -> bool:
    # huggingface_hub reads these once at import; a run may set them later
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cached_on_hub_cache(model_id: str) -> bool:
    """Whether the local Hugging Face cache holds ``model_id`` (its config, at least)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(model_id, "config.json")
    return isinstance(found, str)


def _hub_reachable() -> bool:
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_TIMEOUT_S)
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def profile_models(profile: str, chapters: list[str]) -> list[str]:
    """The hub ids a profile's chapters name in ``MODEL_PARAMETERS``."""
    found = {params[key] for name, params in PROFILES.get(profile, {}).items() if name in chapters
             for key in MODEL_PARAMETERS if key in params}
    return sorted(found)


def check_profile(profile: str, chapters: list[str]) -> None:
    """Refuse, before any kernel starts, a profile that cannot run here. The ``paper``
    profile needs the papers' models from the Hugging Face hub (or all of them in the
    local cache) and a CUDA GPU with enough memory; the message says what is missing and
    what the profile needs."""
    if profile != "paper":
        return
    models = profile_models(profile, chapters)
    problems = []
    if _hub_offline():
        problems.append("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so the hub models cannot be downloaded")
    elif not all(_cached_on_hub_cache(m) for m in models) and not _hub_reachable():
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        problems.append(f"{endpoint} cannot be reached (no answer within {HUB_TIMEOUT_S:.0f} s) and not every "
                        f"model is in the local Hugging Face cache")
    try:
        has_cuda = resolve_device("auto").startswith("cuda")
    except (DeviceNotAvailableError, ValueError):
        has_cuda = False
    if not has_cuda:
        problems.append("PyTorch sees no CUDA GPU on this machine")
    if not problems:
        return
    memory = max([PAPER_GPU_MEMORY_GB.get(c, 0) for c in chapters] + [0])
    per_chapter = ", ".join(f"{c} {PAPER_GPU_MEMORY_GB[c]} GB" for c in chapters if c in PAPER_GPU_MEMORY_GB)
    raise BookError(
        f"the 'paper' profile cannot run here: {'; '.join(problems)}. It runs the papers' models "
        f"({', '.join(models) or 'none for these chapters'}) from the Hugging Face hub on a CUDA GPU with about "
        f"{memory} GB of memory ({per_chapter}); Llama 3 needs its licence accepted on huggingface.co and a "
        f"token (`huggingface-cli login`). On a CPU machine use --profile quick or full "
        f"(README: 'The paper profile').")


# Fingerprints and provenance ---------------------------------------------------------

def crowdlens_source_sha256() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".csv", ".json", ".txt"}:
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def data_sha256s() -> dict[str, str]:
    """sha256 of every registry table file present; memoised by path, size and mtime."""
    memo_path = cache_dir() / "book" / "data_sha256.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    result, folder = {}, data_dir()
    for table in TABLES.values():
        path = folder / table.relpath
        if not path.is_file():
            continue
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = sha256_file(path)
        result[table.name] = memo[key]
    with atomic_path(memo_path) as tmp:
        tmp.write_text(json.dumps(memo, indent=1))
    return result


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def cache_key(name: str, parameters: dict[str, Any], data: dict[str, str], device: str = "cpu") -> str:
    """What an executed chapter depends on; the device it runs on counts when it is not
    the CPU (an accelerator's numbers differ in the last digits; CPU keys stay as they were)."""
    payload = json.dumps(
        {
            "source": chapter_source(name).read_text(encoding="utf-8"),
            "parameters": parameters,
            "crowdlens": crowdlens_source_sha256(),
            "data": data,
            **({"device": device.split(":")[0]} if device != "cpu" else {}),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


# Execution ---------------------------------------------------------------------------

@dataclass
class ChapterRun:
    name: str
    notebook: Path
    cached: bool
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)


def _failure_message(name: str, exc: Exception, failed_path: Path) -> str:
    cell = getattr(exc, "exec_count", None)
    trace = "\n".join(getattr(exc, "traceback", []) or [str(exc)])
    # strip ANSI colours from the kernel's traceback
    trace = re.sub(r"\x1b\[[0-9;]*m", "", trace)
    return (
        f"chapter '{name}' failed at cell {cell}: {getattr(exc, 'ename', type(exc).__name__)}: "
        f"{getattr(exc, 'evalue', exc)}\n{trace}\n"
        f"The partly executed notebook is at {failed_path}. Chapters that finished are kept; "
        f"fix the problem and rerun: the build resumes from this chapter."
    )


def _run_tag() -> str:
    """``host--pid``: names this run's work folder, so that a later run can tell a dead run's leftovers."""
    return f"{socket.gethostname().replace('--', '-')}--{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _sweep_dead_runs(work: Path) -> None:
    """Remove the work folders of runs on this host whose process is gone (killed, or the machine
    stopped); a live run's folder, or another host's sharing this cache, is left alone."""
    host = socket.gethostname().replace("--", "-")
    for folder in work.glob("*--*--*--*"):
        try:
            _, folder_host, pid, _ = folder.name.rsplit("--", 3)
            if folder.is_dir() and folder_host == host and not _pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        except ValueError:
            continue


#: Kernels this process started and has not yet shut down; Ctrl-C kills them outright.
_LIVE_KERNELS: "weakref.WeakSet" = weakref.WeakSet()
_KERNEL_MANAGER = None


def _kernel_manager_class():
    """jupyter_client's AsyncKernelManager (papermill's default), remembering the kernels it starts."""
    global _KERNEL_MANAGER
    if _KERNEL_MANAGER is None:
        manager = _book_module("jupyter_client.manager")

        class TrackedKernelManager(manager.AsyncKernelManager):
            async def start_kernel(self, **kwargs):
                _LIVE_KERNELS.add(self)
                return await super().start_kernel(**kwargs)

            async def shutdown_kernel(self, now: bool = False, restart: bool = False):
                _LIVE_KERNELS.discard(self)
                return await super().shutdown_kernel(now=now, restart=restart)

        _KERNEL_MANAGER = TrackedKernelManager
    return _KERNEL_MANAGER


def _kill_live_kernels() -> None:
    """SIGKILL the process group of every kernel this process started (each kernel has its own
    session, so its group never holds this process); a kernel already gone is skipped."""
    for manager in list(_LIVE_KERNELS):
        provisioner = getattr(manager, "provisioner", None)
        pgid, pid = getattr(provisioner, "pgid", None), getattr(provisioner, "pid", None)
        process = getattr(provisioner, "process", None)
        if process is not None and process.poll() is not None:  # gone (crashed): its group id may be reused
            _LIVE_KERNELS.discard(manager)
            continue
        try:
            if pgid and pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
            elif pid:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        _LIVE_KERNELS.discard(manager)


@contextlib.contextmanager
def _ctrl_c_kills_the_kernel(pressed: list):
    """On Ctrl-C, kill the kernel first (and note it in ``pressed``), then raise KeyboardInterrupt
    as before.

    Left to itself, nbclient shuts a busy kernel down gracefully: the kernel's late reply on a
    socket already closed printed a ZMQError traceback, and the shutdown waited seconds. A
    process that ignores SIGINT (nohup, a background job) or a thread other than the main one
    keeps its own handling.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return

    def on_interrupt(signum, frame):
        pressed.append(time.time())
        _kill_live_kernels()
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def execute_chapter(
    name: str,
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
) -> ChapterRun:
    """Execute one chapter with papermill (profile parameters, then ``overrides``) unless cached.

    Each run works in its own folder under ``<cache>/book/work`` (removed when the run ends),
    so two runs of one chapter at once never read each other's notebooks; the cache entry is
    written, atomically, from this run's own executed notebook under the key of its own
    parameters. Ctrl-C kills the kernel and raises :class:`Interrupted`; nothing of the
    interrupted chapter is kept.
    """
    nbformat, papermill = _book_module("nbformat"), _book_module("papermill")

    notebook = read_notebook(name)
    defaults, allowed = parameters_of(notebook), allowed_values_of(notebook, name)
    parameters = validate_parameters(name, profile_parameters(name, profile), defaults, allowed)
    parameters.update(validate_parameters(name, overrides or {}, defaults, allowed))
    check_profile(profile, [name])
    device = chapter_device(name, parameters, defaults)
    data = data_sha256s()
    key = cache_key(name, parameters, data, device)
    cached = cache_dir() / "book" / "chapters" / f"{name}-{key}.ipynb"
    target = executed_dir() / f"{name}.ipynb"
    started = time.time()
    if cached.is_file() and not force:
        with atomic_path(target, suffix=".ipynb") as tmp:
            nbformat.write(_coalesced(nbformat.read(cached, as_version=4)), tmp)
        return ChapterRun(name, target, True, time.time() - started, parameters)

    work_root = cache_dir() / "book" / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    _sweep_dead_runs(work_root)
    work = Path(tempfile.mkdtemp(prefix=f"{name}--{_run_tag()}--", dir=work_root))
    try:
        source_nb, output_nb = work / "source.ipynb", work / "executed.ipynb"
        nbformat.write(notebook, source_nb)
        start_time = dt.datetime.now(dt.timezone.utc)
        commit = git_commit()  # the code that runs, even if the checkout moves during a long run
        executed_dir().mkdir(parents=True, exist_ok=True)
        # the kernel inherits these: library progress bars and warnings belong in a
        # terminal, not in the printed book (chapters pass progress=False to their own)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # tqdm.auto warns at import when ipywidgets is absent; the chapters draw no widgets
        os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found")
        pressed: list = []
        try:
            with _ctrl_c_kills_the_kernel(pressed):
                papermill.execute_notebook(
                    str(source_nb),
                    str(output_nb),
                    parameters=parameters,
                    kernel_name="python3",
                    progress_bar=progress,
                    cwd=str(executed_dir()),
                    kernel_manager_class=_kernel_manager_class(),
                )
        except KeyboardInterrupt:
            _kill_live_kernels()  # one still starting when Ctrl-C came
            raise Interrupted(name) from None
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            if pressed:  # the kernel killed by Ctrl-C, reported as a dead kernel rather than the interrupt
                raise Interrupted(name) from None
            failed = book_dir() / "_failed" / f"{name}.ipynb"
            if output_nb.exists():
                with atomic_path(failed, suffix=".ipynb") as tmp:
                    shutil.copyfile(output_nb, tmp)
            raise ChapterFailed(name, _failure_message(name, exc, failed), failed) from exc
        end_time = dt.datetime.now(dt.timezone.utc)
        executed = _coalesced(nbformat.read(output_nb, as_version=4))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for cell in executed.cells:  # say in the book where the injected values came from
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace(
                "# Parameters", f"# Parameters of this run: profile '{profile}' plus command-line overrides", 1
            )
    executed.metadata["crowdlens"] = {
        "chapter": name,
        "profile": profile,
        "parameters": parameters,
        "defaults": defaults,
        "device": device,
        "device_name": device_description(device),
        "data_sha256": data,
        "packages": package_versions(),
        "git_commit": commit,
        "started": start_time.isoformat(timespec="seconds"),
        "finished": end_time.isoformat(timespec="seconds"),
        "seconds": round((end_time - start_time).total_seconds(), 1),
        "cache_key": key,
    }
    # both from this run's notebook in memory: a concurrent run may be replacing a file at any moment
    with atomic_path(cached, suffix=".ipynb") as tmp:
        nbformat.write(executed, tmp)
    with atomic_path(target, suffix=".ipynb") as tmp:
        nbformat.write(executed, tmp)
    failed = book_dir() / "_failed" / f"{name}.ipynb"
    failed.unlink(missing_ok=True)
    return ChapterRun(name, target, False, time.time() - started, parameters)


def _coalesced(notebook):
    """The notebook with each cell's consecutive stream outputs merged and every line
    overwritten by a carriage return dropped (nbconvert's CoalesceStreamsPreprocessor):
    a progress bar that a library draws in a cell prints as its last state, not as one
    line per update."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    notebook, _ = CoalesceStreamsPreprocessor().preprocess(notebook, {})
    return notebook


def write_provenance_page(chapters: list[str] | None = None) -> Path:
    """``book/provenance.md``: one section per executed chapter, from its notebook metadata."""
    nbformat = _book_module("nbformat")

    chapters = chapters if chapters is not None else toc_chapters()
    lines = [
        "# Provenance",
        "",
        "Every number in this book was computed when the chapter below was executed. "
        "This page is generated by `crowdlens book` from the metadata that the runner "
        "stores in each executed notebook: the parameters (after the profile and any "
        "command-line overrides), the sha256 of every data file, the package versions and "
        "the git commit, and the device that ran the models. Rerun a chapter with "
        "`crowdlens run CHAPTER -p NAME VALUE`.",
        "",
    ]
    for name in chapters:
        path = executed_dir() / f"{name}.ipynb"
        lines += [f"## {name}", ""]
        if not path.is_file():
            lines += ["Not executed in this build.", ""]
            continue
        meta = nbformat.read(path, as_version=4).metadata.get("crowdlens", {})
        lines += [
            f"- profile: `{meta.get('profile')}`; git commit: `{meta.get('git_commit')}`",
            f"- executed: {meta.get('started')} → {meta.get('finished')} ({meta.get('seconds')} s)",
            f"- device: `{meta.get('device', 'not recorded')}` ({meta.get('device_name', 'not recorded')})",
            "",
            "| parameter | value | default |",
            "|---|---|---|",
        ]
        defaults = meta.get("defaults", {})
        params = {**defaults, **meta.get("parameters", {})}
        for key, value in params.items():
            lines.append(f"| `{key}` | `{value!r}` | `{defaults.get(key)!r}` |")
        lines += ["", "| data table | sha256 |", "|---|---|"]
        lines += [f"| {table} | `{digest}` |" for table, digest in meta.get("data_sha256", {}).items()]
        lines += ["", "| package | version |", "|---|---|"]
        lines += [f"| {pkg} | {ver} |" for pkg, ver in meta.get("packages", {}).items()]
        lines.append("")
    target = book_dir() / "provenance.md"
    with atomic_path(target, suffix=".md") as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return target


def write_generated_pages(chapters: list[str] | None = None) -> list[Path]:
    """The key-results page (from the executed chapters' published results) and the
    performance page (from ``benchmarks/results/*.json``), written into ``book/``."""
    chapters = chapters if chapters is not None else toc_chapters()
    notebooks = {name: executed_dir() / f"{name}.ipynb" for name in chapters}
    return [pages.write_key_results_page(book_dir() / "key_results.md", notebooks),
            pages.write_performance_page(book_dir() / "performance.md", _root() / "benchmarks" / "results")]


def build_html(quiet: bool = False) -> Path:
    """``jupyter-book build book/`` (notebooks are already executed; Sphinx does not re-run them)."""
    _book_module("jupyter_book")
    entry = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "build", str(book_dir()), "--keep-going"]
    if quiet:
        command.append("--quiet")
    result = subprocess.run(command, cwd=_root())
    if result.returncode != 0 or not (html_dir() / "index.html").is_file():
        raise BookError(f"jupyter-book build failed (exit {result.returncode}); see the log above")
    return html_dir()


def build_book(
    profile: str = "quick",
    only: list[str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
    progress: bool = True,
    html: bool = True,
    device: str | None = None,
) -> list[ChapterRun]:
    """Execute the book's chapters and build the HTML book.

    With ``only``, just those chapters execute — plus, when ``html`` is set, any chapter
    never executed before, so that the book is complete. ``device`` sets the ``device``
    parameter of every chapter that has one (``--device`` on the command line).
    Everything is checked — chapters, parameters, devices, the profile's needs — before
    the first kernel starts.
    """
    from tqdm import tqdm

    chapters = toc_chapters()
    overrides = {name: dict(values) for name, values in (overrides or {}).items()}
    if device is not None:
        try:
            device = check_device_name(device)
        except ValueError as exc:
            raise ParameterError(f"--device: {exc}") from exc
    for name in list(only or []) + list(overrides):
        chapter_source(name)  # unknown chapter → clear error before any kernel starts
        validate_parameters(name, overrides.get(name, {}))
    # with ``only``, other chapters run just when the HTML book needs them and they were never executed
    todo = [
        c for c in chapters
        if only is None or c in only or (html and not (executed_dir() / f"{c}.ipynb").is_file())
    ]
    check_profile(profile, todo)
    for name in todo:  # a profile value out of its declared range fails now, not after earlier chapters ran
        notebook = read_notebook(name)
        defaults, allowed = parameters_of(notebook), allowed_values_of(notebook, name)
        if device is not None and "device" in defaults:
            overrides.setdefault(name, {})["device"] = device
        parameters = {**validate_parameters(name, profile_parameters(name, profile), defaults, allowed),
                      **validate_parameters(name, overrides.get(name, {}), defaults, allowed)}
        chapter_device(name, parameters, defaults)  # an absent GPU is named now, not after an hour of chapters
    runs = []
    try:
        for name in tqdm(todo, desc=f"chapters ({profile})", unit="chapter", disable=not progress):
            runs.append(execute_chapter(name, profile, overrides.get(name),
                                        force=force and (only is None or name in only), progress=progress))
        write_provenance_page(chapters)
        write_generated_pages(chapters)
        if html:
            build_html(quiet=not progress)
    except Interrupted:
        raise
    except KeyboardInterrupt:  # between chapters, or in the HTML build: finished chapters are cached
        raise Interrupted() from None
    return runs
