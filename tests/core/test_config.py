"""crowdlens.config: atomic writes of files and folders leave nothing half-written."""

from __future__ import annotations

import pytest

from crowdlens.core.config import atomic_dir, atomic_path, sha256_file


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_a_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "weights").write_text("half")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_dir(target) as staging:
        (staging / "config").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["config"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_sha256_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
