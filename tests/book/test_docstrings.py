"""Every library function or class that a chapter calls says so in its docstring.

A reader of the API reference (or of ``help()``) learns where in the book a function
is shown at work, and whoever changes a function learns which chapters to re-run.
The convention is a sentence such as "Used in the training chapter." or "Used in the
annotation and training chapters.", naming each chapter by its file stem.

The chapters are read, not run: the code cells of ``chapters/*.md`` are parsed with
``ast``, their ``crowdlens`` imports resolved with ``importlib``, and every
``alias.name`` on an imported module and every directly imported name resolved to
its object. Methods reached through local variables (``experiment.run``) are not
checked.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import types
import warnings
from pathlib import Path

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
CELL_START = "```{code-cell} ipython3"
# "Used in the training chapter", "Used in the annotation, training and weibo_crowds chapters"
USED_IN = re.compile(r"Used\s+in\s+the\s+(\w+(?:(?:\s*,\s*|\s+and\s+)\w+)*)\s+chapters?\b")


def code_cells(text: str) -> list[str]:
    """The sources of a chapter's code cells, without the cell option lines (":tags: ...")."""
    cells, current = [], None
    for line in text.splitlines():
        if current is None:
            if line.strip().startswith(CELL_START):
                current = []
        elif line.strip() == "```":
            cells.append("\n".join(current))
            current = None
        elif not current and line.startswith(":"):
            continue  # an option line at the top of the cell
        else:
            current.append(line)
    return cells


def parsed_cells(text: str) -> list[ast.Module]:
    """The code cells that parse as Python once magics ("%...") and shell lines ("!...") are dropped."""
    trees = []
    for source in code_cells(text):
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            trees.append(ast.parse("\n".join(lines)))
        except SyntaxError:
            continue
    return trees


def _import(module: str, name: str):
    """``from module import name``: the attribute, or else the submodule of that name."""
    found = importlib.import_module(module)
    try:
        return getattr(found, name)
    except AttributeError:
        return importlib.import_module(f"{module}.{name}")


def used_objects(text: str) -> tuple[dict[str, object], list[str]]:
    """What a chapter reaches through its ``crowdlens`` imports, by dotted path as the
    chapter writes it (``part.agreement``), and the paths that resolve to nothing."""
    trees = parsed_cells(text)
    names: dict[str, object] = {}  # the chapter's aliases bound to crowdlens modules or objects
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "crowdlens":
                for alias in node.names:
                    names[alias.asname or alias.name] = _import(node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != "crowdlens":
                        continue
                    if alias.asname:
                        names[alias.asname] = importlib.import_module(alias.name)
                    else:
                        importlib.import_module(alias.name)
                        names["crowdlens"] = importlib.import_module("crowdlens")

    used = {name: obj for name, obj in names.items() if not isinstance(obj, types.ModuleType)}
    unresolved: list[str] = []

    def resolve(node: ast.AST) -> tuple[str, object] | None:
        if isinstance(node, ast.Name) and node.id in names:
            return node.id, names[node.id]
        if isinstance(node, ast.Attribute):
            base = resolve(node.value)
            if base is None or not isinstance(base[1], types.ModuleType):
                return None
            path = f"{base[0]}.{node.attr}"
            try:
                obj = getattr(base[1], node.attr)
            except AttributeError:
                unresolved.append(path)
                return None
            used[path] = obj
            return path, obj
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute):
                    resolve(node)
    return used, sorted(set(unresolved))


def checked(obj: object) -> bool:
    """A function or class defined in a crowdlens module (not a constant, not a shim)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    module = getattr(obj, "__module__", None) or ""
    return ((inspect.isfunction(obj) or inspect.isclass(obj)) and module.startswith("crowdlens.")
            and not module.startswith("crowdlens.core.moved"))


def chapters_named(doc: str | None) -> set[str]:
    """The chapter stems a docstring's "Used in the ... chapter(s)" sentences name."""
    named = set()
    for match in USED_IN.finditer(doc or ""):
        named |= set(re.findall(r"\w+", match.group(1))) - {"and"}
    return named


def qualified(obj: object) -> str:
    obj = inspect.unwrap(obj) if callable(obj) else obj
    return f"{obj.__module__}.{obj.__qualname__}"


def usage(paths: list[Path]) -> tuple[dict[str, tuple[object, set[str]]], list[str]]:
    """Each checked object by qualified name, with the chapters using it; and the
    chapter paths that resolve to nothing, as "chapter: path"."""
    objects: dict[str, tuple[object, set[str]]] = {}
    broken = []
    for path in paths:
        used, unresolved = used_objects(path.read_text(encoding="utf-8"))
        broken += [f"{path.stem}: {name} does not exist" for name in unresolved]
        for obj in used.values():
            if checked(obj):
                objects.setdefault(qualified(obj), (obj, set()))[1].add(path.stem)
    return objects, broken


def missing_mentions(paths: list[Path]) -> list[str]:
    """A line "qualified.name: chapter, ..." for each checked object whose docstring misses a chapter using it."""
    objects, missing = usage(paths)
    for name, (obj, chapters) in sorted(objects.items()):
        absent = chapters - chapters_named(inspect.getdoc(obj))
        if absent:
            missing.append(f"{name}: {', '.join(sorted(absent))}")
    return missing


def chapter_paths() -> list[Path]:
    return sorted(CHAPTERS.glob("*.md"))


def test_every_function_and_class_a_chapter_uses_names_the_chapter_in_its_docstring():
    missing = missing_mentions(chapter_paths())
    assert missing == [], ("add 'Used in the <stem> chapter(s).' to these docstrings "
                           "(or fix the chapter's use):\n" + "\n".join(missing))


def test_the_chapters_reach_many_library_objects_so_the_check_is_not_vacuous():
    paths = chapter_paths()
    assert {path.stem for path in paths} >= {"data_tour", "annotation", "training", "reddit_communities",
                                             "weibo_crowds"}
    objects, _ = usage(paths)
    assert len(objects) >= 60, sorted(objects)
    for path in paths:  # each chapter contributes
        assert any(path.stem in chapters for _, chapters in objects.values()), path.stem


def test_a_missing_mention_is_reported(tmp_path):
    chapter = tmp_path / "made_up.md"
    chapter.write_text(
        "# A chapter\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\nrows = 10\n```\n\n"
        "```{code-cell} ipython3\n%matplotlib inline\n!echo shell\nimport numpy as np\n"
        "from crowdlens.core import sampling as s\nfrom crowdlens.core.metrics import confusion_matrix\n"
        "from crowdlens.participation import FIVE_CLASSES\n"
        "s.sample(frame, rows)\ns.no_such_function()\nnp.mean([1])\n```\n\n"
        "```{code-cell} ipython3\nthis is not ( python\nfrom crowdlens.core import plots\n```\n\n"
        "```python\nfrom crowdlens.core import explore\nexplore.describe_text\n```\n",
        encoding="utf-8",
    )
    text = chapter.read_text(encoding="utf-8")
    assert len(code_cells(text)) == 3  # the ```python block is not a cell
    assert code_cells(text)[0] == "rows = 10"  # the option line is not code
    used, unresolved = used_objects(text)
    assert unresolved == ["s.no_such_function"]
    assert set(used) == {"s.sample", "confusion_matrix", "FIVE_CLASSES"}  # numpy, the broken cell: not crowdlens

    assert missing_mentions([chapter]) == [
        "made_up: s.no_such_function does not exist",
        "crowdlens.core.metrics.confusion_matrix: made_up",
        "crowdlens.core.sampling.sample: made_up",
    ]  # FIVE_CLASSES is a constant, not checked


def test_the_used_in_sentence_is_read_across_lines_and_lists():
    doc = "Fit a model on training rows.\n\nUsed in the annotation,\ntraining and weibo_crowds chapters."
    assert chapters_named(doc) == {"annotation", "training", "weibo_crowds"}
    assert chapters_named("Used in the training chapter (through ``Experiment.run``).") == {"training"}
    assert chapters_named("Trains on the training split.") == set()  # a bare word is not a mention
    assert chapters_named(None) == set()
