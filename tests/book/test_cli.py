"""The crowdlens command line, in-process (typer's CliRunner)."""

from __future__ import annotations

import nbformat
import pytest
from typer.testing import CliRunner

from crowdlens.book import runner as book
from crowdlens.cli import app, parse_param_args

runner = CliRunner()


def test_param_args_both_forms():
    assert parse_param_args(["-p", "sample_rows", "500", "--param", "seed=3"]) == {"sample_rows": "500", "seed": "3"}
    with pytest.raises(Exception, match="NAME and a VALUE"):
        parse_param_args(["-p", "sample_rows"])


def test_run_refuses_unknown_parameter_before_any_kernel_starts():
    result = runner.invoke(app, ["run", "data_tour", "-p", "sample_row", "500", "--no-html"])
    assert result.exit_code == 1
    assert "no parameter 'sample_row'" in result.output and "sample_rows = 20000 (int)" in result.output


def test_run_refuses_wrong_type_and_unknown_chapter():
    result = runner.invoke(app, ["run", "data_tour", "-p", "sample_rows", "lots", "--no-html"])
    assert result.exit_code == 1 and "must be int" in result.output
    result = runner.invoke(app, ["run", "nonexistent", "--no-html"])
    assert result.exit_code == 1 and "data_tour" in result.output


def test_params_lists_profiles():
    result = runner.invoke(app, ["params", "data_tour"])
    assert result.exit_code == 0 and "sample_rows" in result.output and "20000" in result.output


def test_data_check_on_shared_data(shared_data):
    result = runner.invoke(app, ["data", "check"])
    assert result.exit_code == 0 and "ced_reactions" in result.output and "1,275,180" in result.output


def test_data_check_fails_on_empty_folder(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1 and "missing" in result.output


def test_data_fetch_unknown_name():
    result = runner.invoke(app, ["data", "fetch", "nope"])
    assert result.exit_code == 1 and "weibo_smp2020_ewect" in result.output


@pytest.mark.slow
def test_run_data_tour_with_sample_rows_500(tmp_path, monkeypatch, isolated_cache, shared_data):
    """`crowdlens run data_tour -p sample_rows 500` reruns just that chapter with the override."""
    monkeypatch.setattr(book, "executed_dir", lambda: tmp_path / "executed")
    result = runner.invoke(app, ["run", "data_tour", "-p", "sample_rows", "500", "--no-html"])
    assert result.exit_code == 0, result.output
    assert "executed" in result.output and "'sample_rows': 500" in result.output
    assert sorted(p.name for p in (tmp_path / "executed").glob("*.ipynb")) == ["data_tour.ipynb"]  # just that chapter
    executed = nbformat.read(tmp_path / "executed" / "data_tour.ipynb", as_version=4)
    assert executed.metadata["crowdlens"]["parameters"]["sample_rows"] == 500
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "sample_rows = 500" in injected[0].source
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in executed.cells for o in c.get("outputs", []))


# --device and the paper profile: refused before any kernel starts ---------------------------

@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if a chapter would execute; record what it would have been given."""
    calls = []

    def execute_chapter(name, profile="quick", overrides=None, force=False, progress=True):
        calls.append((name, profile, dict(overrides or {})))
        return book.ChapterRun(name, book.executed_dir() / f"{name}.ipynb", True, 0.0, dict(overrides or {}))

    monkeypatch.setattr(book, "execute_chapter", execute_chapter)
    monkeypatch.setattr(book, "write_provenance_page", lambda chapters=None: None)
    return calls


@pytest.mark.parametrize("command", [["run", "training", "--profile", "paper", "--no-html"],
                                     ["book", "--profile", "paper", "--no-html"]])
def test_the_paper_profile_refuses_to_start_offline(monkeypatch, no_kernel, command):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert no_kernel == []  # stopped before any chapter ran
    message = " ".join(result.output.split())
    assert "HF_HUB_OFFLINE" in message and "cannot run here" in message
    assert book.PAPER_LLM in message and book.PAPER_ENCODER in message  # what it needs from the hub
    assert "CUDA GPU" in message and "GB of memory" in message


def test_the_device_option_is_checked_before_any_kernel(no_kernel):
    result = runner.invoke(app, ["run", "data_tour", "--device", "gpu", "--no-html"])
    assert result.exit_code == 1 and "choose one of auto, cpu, cuda, cuda:N, mps" in result.output
    result = runner.invoke(app, ["run", "data_tour", "-p", "device", "tpu", "--no-html"])
    assert result.exit_code == 1 and "unknown device 'tpu'" in result.output
    result = runner.invoke(app, ["book", "--device", "gpu", "--no-html"])
    assert result.exit_code == 1 and "choose one of" in result.output
    assert no_kernel == []


def test_a_device_the_machine_lacks_is_named_before_any_kernel(monkeypatch, no_kernel):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["run", "training", "--device", "cuda", "--no-html"])
    assert result.exit_code == 1 and "sees no CUDA GPU" in " ".join(result.output.split())
    assert no_kernel == []


def test_the_device_option_sets_every_chapters_device_parameter(no_kernel):
    result = runner.invoke(app, ["run", "training", "--device", "CPU", "-p", "epochs", "1", "--no-html"])
    assert result.exit_code == 0, result.output
    assert no_kernel == [("training", "quick", {"epochs": "1", "device": "cpu"})]


def test_pretrain_keeps_test_comments_out_and_prints_the_folder(tiny_encoder, isolated_cache, shared_data,
                                                               monkeypatch):
    """`crowdlens pretrain` on a small sample of the real corpora, with a tiny encoder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    command = ["pretrain", "--model", tiny_encoder, "--texts", "24", "--max-length", "12", "--batch-size", "8",
               "--device", "cpu"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "dropped by test CommentID" in result.output and "3 steps" in result.output
    folders = list((isolated_cache / "models").glob("*-reddit-mlm-*"))
    assert len(folders) == 1 and str(folders[0]) in result.output.replace("\n", "")
