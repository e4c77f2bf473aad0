"""pyproject.toml and environment.yml declare the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, requirement
    name = re.sub(r"[-_.]+", "-", match[1]).lower()
    spec = ",".join(sorted(part.strip() for part in match[2].replace(" ", "").split(",") if part.strip()))
    return name, spec


def all_requirements(project: dict) -> list[str]:
    """The library's dependencies and every extra's."""
    return project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]


def test_pyproject_and_environment_yml_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = dict(normalise(r) for r in all_requirements(project))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: dict[str, str] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            listed.update(normalise(r) for r in entry["pip"])
        elif not entry.startswith(("python", "pip")) or entry.startswith("python-"):
            listed.update([normalise(entry)])
    assert listed == declared


def test_every_dependency_has_a_lower_bound_and_torch_is_capped():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in all_requirements(project):
        assert ">=" in requirement, f"{requirement} needs a lower bound"
    torch = next(r for r in project["dependencies"] if r.startswith("torch"))
    assert "<=2.14" in torch


def test_no_deps_package_is_installed_by_the_makefile():
    no_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["crowdlens"]["no-deps"]
    makefile = (ROOT / "Makefile").read_text()
    for requirement in no_deps:
        assert f'--no-deps "{requirement}"' in makefile


def test_the_book_and_the_tests_are_extras_that_make_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {normalise(r)[0] for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert {"jupyter-book", "papermill", "jupytext"} <= {normalise(r)[0] for r in extras["book"]}
    assert {"pytest", "playwright"} <= {normalise(r)[0] for r in extras["test"]}
    assert {"jupyterlab", "jupytext"} <= {normalise(r)[0] for r in extras["lab"]}
    assert not runtime & {"jupyter-book", "papermill", "jupytext", "pytest", "playwright"}
    assert '-e ".[book,test,lab]"' in (ROOT / "Makefile").read_text()


def test_the_licence_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # a string, not the deprecated {text = ...} table


def test_the_cuda_extra_carries_bitsandbytes_and_the_library_does_not():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "bitsandbytes" in {normalise(r)[0] for r in project["optional-dependencies"]["cuda"]}
    assert "bitsandbytes" not in {normalise(r)[0] for r in project["dependencies"]}
    # the library's refusal names the install command of this extra
    from crowdlens.core.device import CUDA_EXTRA

    assert CUDA_EXTRA == "pip install 'crowdlens[cuda]'"
