"""benchmarks/bench_cpu_unchanged.py: two builds compared by the numbers and figures of
each cell, on hand-made executed notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("cpu_unchanged")


def executed(folder: Path, name: str, cells: list[tuple[str, list[dict]]]) -> None:
    nb = nbformat.v4.new_notebook()
    for source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}-0123abcd.ipynb")


def result(text: str) -> dict:
    return {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": text}}


def stdout(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def figure(png: str) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": "<Figure>"}}


def test_same_numbers_pass_despite_timings_paths_reprs_and_reformatting(bench, tmp_path):
    executed(tmp_path / "a", "ch", [
        ("x=f( 1 )", [result("accuracy 0.812\nseconds per comment 3.786"), figure("AAAA")]),
        ("save()", [stdout("saved to /tmp/cacheA/predictions/x.parquet in 2.1 s\n")]),
    ])
    executed(tmp_path / "b", "ch", [
        ("x = f(1, device=device)", [result("<Axes: title={'left': 'x'}>"), result("accuracy 0.812\n"
                                                                                 "seconds per comment 3.670"),
                                     figure("AAAA")]),
        ("save()", [stdout("saved to /tmp/cacheB/predictions/x.parquet in 9.9 s\n")]),
    ])
    compared = bench.compare(tmp_path / "a", tmp_path / "b")
    assert compared["code_cells"] == 2 and compared["figures"] == 1
    assert compared["cells_differing"] == [] and compared["figures_differing"] == 0


def test_a_changed_number_or_figure_is_reported(bench, tmp_path):
    executed(tmp_path / "a", "ch", [("f()", [result("accuracy 0.812"), figure("AAAA")])])
    executed(tmp_path / "b", "ch", [("f()", [result("accuracy 0.813"), figure("BBBB")])])
    compared = bench.compare(tmp_path / "a", tmp_path / "b")
    assert [(d["chapter"], d["cell"]) for d in compared["cells_differing"]] == [("ch", 0)]
    assert compared["cells_differing"][0]["before"] == ["0.812"]
    assert compared["figures_differing"] == 1
    executed(tmp_path / "c", "ch", [("f()", []), ("g()", [])])
    assert compared and bench.compare(tmp_path / "a", tmp_path / "c")["cells_differing"][0]["why"] == "1 vs 2 code cells"
