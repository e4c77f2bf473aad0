"""The book's sources as a reader meets them: code cells that fit the rendered page, and
an introduction whose chapter list is the table of contents."""

import re
from pathlib import Path

import pytest
import yaml

from crowdlens.book import runner

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
#: The rendered book clips code lines beyond about 90 characters; black's width.
MAX_CODE_LINE = 88


def code_cell_lines(text: str):
    """(line number, line) of every line inside a ```{code-cell} fence."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```{code-cell}"):
            inside = True
        elif inside and line.startswith("```"):
            inside = False
        elif inside:
            yield number, line


def test_code_cell_lines_are_found_only_inside_code_cells():
    text = "x" * 120 + "\n```{code-cell} ipython3\nshort = 1\n" + "y" * 90 + "\n```\n" + "z" * 100
    assert [n for n, line in code_cell_lines(text) if len(line) > MAX_CODE_LINE] == [4]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_lines_fit_the_page(chapter):
    long = [f"{chapter.name}:{n} ({len(line)} characters)"
            for n, line in code_cell_lines(chapter.read_text()) if len(line) > MAX_CODE_LINE]
    assert not long, (f"code lines over {MAX_CODE_LINE} characters (format the cell with "
                      f"black --line-length {MAX_CODE_LINE}): " + ", ".join(long))


def toc_files() -> list[str]:
    files = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())["parts"])
    return files


def test_intro_lists_the_table_of_contents_in_its_order():
    intro = (ROOT / "book" / "intro.md").read_text()
    listed = re.findall(r"^- \{doc\}`([^`]+)`", intro, flags=re.M)
    assert listed == toc_files()
    assert [f.removeprefix("chapters/") for f in listed if f.startswith("chapters/")] == runner.toc_chapters()
