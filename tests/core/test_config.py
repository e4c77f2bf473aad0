"""crowdlens.config: atomic writes of files and folders leave nothing half-written."""

from __future__ import annotations

import pytest

from crowdlens.core.config import atomic_dir, atomic_path, checkpoint_folder, sha256_file


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


def test_atomic_writes_follow_the_umask_not_mkstemps_0600(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "shared.txt") as tmp:
            tmp.write_text("for the whole class")
        with atomic_dir(tmp_path / "model") as staging:
            (staging / "weights.bin").write_bytes(b"0")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_checkpoint_folder_is_one_per_set_of_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("CROWDLENS_CACHE", str(tmp_path))
    first = checkpoint_folder("weibo-emotion", model="e5", epochs=3, seed=0)
    assert first == checkpoint_folder("weibo-emotion", seed=0, epochs=3, model="e5")  # order does not matter
    assert first.parent == tmp_path / "checkpoints" and first.name.startswith("weibo-emotion-")
    assert first != checkpoint_folder("weibo-emotion", model="e5", epochs=4, seed=0)
    assert first != checkpoint_folder("training", model="e5", epochs=3, seed=0)
