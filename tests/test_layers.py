"""The package's architecture, read from its source: layers, studies apart, no circle.

Every ``import`` of a ``crowdlens`` module counts, at the top of a file or inside a
function. ``core`` imports nothing of ``crowdlens`` above it; ``data`` only ``core``;
each study (``participation``, ``crowd_response``) only ``core``, ``data`` and itself;
the book runner, the CLI and the deprecation shims of the old flat layout may import
everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "crowdlens"
STUDIES = ("participation", "crowd_response")
RANK = {"core": 0, "data": 1, "participation": 2, "crowd_response": 2}  # anything else: the top


def module_name(path: Path) -> str:
    parts = ("crowdlens",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: set[str]) -> set[str]:
    """The crowdlens modules a file imports (``from pkg import submodule`` names the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "crowdlens"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "crowdlens":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found & known


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "top"


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, set(known)) - {name} for name, path in known.items()}


def violations(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in edges.items():
        for target in targets:
            here, there = layer(source), layer(target)
            if here == "top":
                continue
            if there == "top" or RANK[there] > RANK[here] or (here in STUDIES and there in STUDIES and here != there):
                wrong.append(f"{source} ({here}) imports {target} ({there})")
    return sorted(wrong)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (one path per back edge)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_package_has_the_layers_and_the_studies_of_the_book():
    names = set(modules())
    for package in ("crowdlens.core", "crowdlens.data", "crowdlens.participation", "crowdlens.crowd_response",
                    "crowdlens.book"):
        assert package in names
    assert {"crowdlens.core.config", "crowdlens.core.hub", "crowdlens.core.metrics", "crowdlens.participation.saved",
            "crowdlens.crowd_response.replies", "crowdlens.book.runner"} <= names


def test_no_import_points_up_a_layer_or_across_the_studies():
    assert violations(graph()) == []


def test_no_import_circle():
    assert circles(graph()) == []


@pytest.mark.parametrize("edges, problem", [
    ({"crowdlens.core.hub": {"crowdlens.participation.saved"}, "crowdlens.participation.saved": set()}, "imports"),
    ({"crowdlens.data.registry": {"crowdlens.book.runner"}, "crowdlens.book.runner": set()}, "imports"),
    ({"crowdlens.crowd_response.replies": {"crowdlens.participation.communities"},
      "crowdlens.participation.communities": set()}, "imports"),
    ({"crowdlens.core.a": {"crowdlens.core.b"}, "crowdlens.core.b": {"crowdlens.core.a"}}, "circle"),
])
def test_the_checks_catch_a_wrong_edge_and_a_circle(edges, problem):
    if problem == "circle":
        assert circles(edges) == [["crowdlens.core.a", "crowdlens.core.b", "crowdlens.core.a"]]
    else:
        assert len(violations(edges)) == 1


def test_imports_inside_functions_count(tmp_path):
    source = tmp_path / "deferred.py"
    source.write_text("def f():\n    from crowdlens.participation import saved\n    import crowdlens.core.hub\n")
    known = {"crowdlens.participation", "crowdlens.participation.saved", "crowdlens.core.hub"}
    assert imported(source, known) == {"crowdlens.participation.saved", "crowdlens.core.hub"}


def test_the_packages_own_imports_sit_at_the_top_of_each_file():
    deferred = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if module and module.split(".")[0] == "crowdlens":
                    deferred.append(f"{name}:{node.lineno} {module}")
    assert deferred == []
