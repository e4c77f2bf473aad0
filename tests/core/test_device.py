"""crowdlens.core.device: which device runs the models, its precision and its name."""

from __future__ import annotations

import contextlib

import pytest
import torch

from crowdlens.core import device as D


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has the given accelerators (CUDA GPUs, MPS)."""
    def set_up(cuda: int = 0, mps: bool = False, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    return set_up


@pytest.mark.parametrize("cuda, mps, expected", [(1, True, "cuda"), (2, False, "cuda"), (0, True, "mps"),
                                                  (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert D.resolve_device("auto") == expected
    assert D.resolve_device() == expected


def test_explicit_names_are_checked_against_the_machine(machine):
    machine(cuda=2)
    assert D.resolve_device("cuda") == "cuda" and D.resolve_device("cuda:1") == "cuda:1"
    assert D.resolve_device(" CPU ") == "cpu"
    with pytest.raises(D.DeviceNotAvailableError, match=r"2 CUDA GPU\(s\): cuda:0, cuda:1"):
        D.resolve_device("cuda:2")
    with pytest.raises(D.DeviceNotAvailableError, match="no Apple Metal"):
        D.resolve_device("mps")
    machine(cuda=0)
    with pytest.raises(D.DeviceNotAvailableError, match="sees no CUDA GPU") as err:
        D.resolve_device("cuda")
    assert "device='auto' or 'cpu'" in str(err.value)


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "tpu", "", "cpu:0"])
def test_a_bad_name_lists_the_choices(name):
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, cuda:N, mps"):
        D.resolve_device(name)
    with pytest.raises(ValueError, match="unknown device"):
        D.check_device_name(name)


def test_mixed_precision_is_bf16_on_ampere_fp16_on_older_gpus_and_mps_none_on_the_cpu(machine):
    machine(cuda=1, bf16=True)
    assert D.mixed_precision("cuda") is torch.bfloat16 and D.mixed_precision("cuda:0") is torch.bfloat16
    machine(cuda=1, bf16=False)
    assert D.mixed_precision("cuda") is torch.float16
    assert D.mixed_precision("mps") is torch.float16
    assert D.mixed_precision("cpu") is None


def test_on_the_cpu_nothing_changes_precision_or_moves():
    with D.autocast("cpu"):
        assert not torch.is_autocast_enabled()
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    assert D.grad_scaler("cpu") is None
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long)}
    assert D.to_device(batch, "cpu") is batch  # the very same tensors: no copy, no pinning
    assert D.device_type("cuda:1") == "cuda" and D.is_accelerator("mps") and not D.is_accelerator("cpu")


def test_the_cpu_is_described_by_its_model():
    assert D.device_description("cpu") == D.cpu_model() and D.cpu_model().strip()


def test_cuda_only_features_are_refused_elsewhere_with_the_fix():
    with pytest.raises(D.DeviceNotAvailableError) as err:
        D.cuda_only("load_in_4bit (4-bit weights)", "cpu")
    assert "needs a CUDA GPU" in str(err.value) and "pip install 'crowdlens[cuda]'" in str(err.value)
