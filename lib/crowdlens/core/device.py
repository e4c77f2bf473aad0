"""Which device runs the models: the one place that chooses it, with its precision and name.

``resolve_device("auto")`` picks a CUDA GPU, else Apple's MPS, else the CPU; an explicit
name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is checked against the machine.
Every training, embedding, scoring and generation step of the book takes a ``device``
parameter (default ``"auto"``) and resolves it here when it runs.

On the CPU everything stays float32 with no autocast (CPUs without bf16 units emulate
it ~10x slower), so CPU results are those of a run without this module. On an
accelerator, ``mixed_precision`` gives the half-precision dtype to compute in.
"""

from __future__ import annotations

import contextlib
import platform
import re
from pathlib import Path

#: The device names ``resolve_device`` accepts (``cuda:N`` for the N-th CUDA GPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")

#: How to install what only CUDA machines need (the ``cuda`` extra of pyproject.toml).
CUDA_EXTRA = "pip install 'crowdlens[cuda]'"

_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceNotAvailableError(RuntimeError):
    """A device was named that this machine (or this PyTorch build) does not have."""


def check_device_name(name: str) -> str:
    """``name`` normalised (trimmed, lower case) if it is one of ``DEVICE_CHOICES``, else a
    ValueError listing them; needs no torch, so a command line can check it at once."""
    text = str(name).strip().lower()
    if not _NAME.match(text):
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} "
                         f"(auto: a CUDA GPU, else Apple MPS, else the CPU)")
    return text


def resolve_device(name: str = "auto") -> str:
    """The device to run on: ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"cpu"``.

    ``"auto"`` → ``"cuda"`` if PyTorch sees a CUDA GPU, else ``"mps"`` if Apple's Metal
    backend is available, else ``"cpu"``. A named device this machine lacks raises
    ``DeviceNotAvailableError`` saying so; an unknown name, a ValueError with the choices.
    """
    name = check_device_name(name)
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available(torch) else "cpu"
    if name == "mps":
        if not _mps_available(torch):
            raise DeviceNotAvailableError(
                "device 'mps' was asked for, but PyTorch sees no Apple Metal (MPS) backend on this machine; "
                "use device='auto' or 'cpu'")
        return name
    if not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        raise DeviceNotAvailableError(
            f"device {name!r} was asked for, but PyTorch sees no CUDA GPU (torch {torch.__version__} is {build}); "
            f"use device='auto' or 'cpu', or install a CUDA build of PyTorch on a machine with an NVIDIA GPU")
    index = int(name.split(":")[1]) if ":" in name else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceNotAvailableError(
            f"device {name!r} was asked for, but this machine has {count} CUDA GPU(s): "
            + ", ".join(f"cuda:{i}" for i in range(count)))
    return name


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device_type(device: str) -> str:
    """``"cuda"`` for ``"cuda:1"``: the kind, as ``torch.autocast`` and cache keys want it."""
    return str(device).split(":")[0]


def is_accelerator(device: str) -> bool:
    return device_type(device) != "cpu"


def mixed_precision(device: str):
    """The half-precision dtype to compute in on ``device`` (a resolved name): bfloat16 on a
    CUDA GPU that supports it, float16 on other CUDA GPUs and on MPS, None (float32) on
    the CPU."""
    kind = device_type(device)
    if kind == "cpu":
        return None
    import torch

    if kind == "cuda":
        with torch.cuda.device(device if ":" in device else 0):
            try:  # native bf16 units (Ampere and later); older GPUs only emulate it
                native = torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # torch before 2.4 has no such argument
                native = torch.cuda.is_bf16_supported()
            return torch.bfloat16 if native else torch.float16
    return torch.float16


def autocast(device: str):
    """A context computing in ``mixed_precision(device)``; nothing at all on the CPU."""
    dtype = mixed_precision(device)
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device_type(device), dtype=dtype)


def grad_scaler(device: str):
    """A ``torch.amp.GradScaler`` when gradients are computed in float16 (which underflows
    without loss scaling); None otherwise (float32 on the CPU, bfloat16 needs none)."""
    import torch

    if mixed_precision(device) is not torch.float16:
        return None
    return torch.amp.GradScaler(device_type(device))


def adamw(parameters, device: str, lr: float, weight_decay: float = 0.01):
    """``torch.optim.AdamW`` with its fused kernel on the CPU and CUDA: one kernel for all
    parameters instead of a Python loop over them (on two CPU cores a MiniLM step takes
    0.017 s instead of 0.12 s); the plain loop elsewhere (MPS)."""
    import torch

    fused = device_type(device) in ("cpu", "cuda")
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=fused or None)


def to_device(tensors: dict, device: str) -> dict:
    """A batch of tensors on ``device``; on the CPU the same tensors, untouched. Pinned
    memory (so the copy to the GPU overlaps compute) only on CUDA."""
    if device == "cpu":
        return tensors
    pin = device_type(device) == "cuda"
    return {k: (v.pin_memory() if pin else v).to(device, non_blocking=pin) if hasattr(v, "to") else v
            for k, v in tensors.items()}


def device_description(device: str) -> str:
    """What ``device`` is, for provenance: the GPU's name and memory, or the CPU model."""
    kind = device_type(device)
    if kind == "cuda":
        import torch

        index = int(device.split(":")[1]) if ":" in device else 0
        properties = torch.cuda.get_device_properties(index)
        return f"{torch.cuda.get_device_name(index)} ({properties.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    if kind == "mps":
        return f"Apple Metal (MPS) on {platform.machine()}"
    return cpu_model()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cuda_only(feature: str, device: str) -> None:
    """Refuse ``feature`` (e.g. 4-bit weights) unless ``device`` is a CUDA GPU, naming the fix."""
    if device_type(device) != "cuda":
        raise DeviceNotAvailableError(
            f"{feature} needs a CUDA GPU (bitsandbytes), but this step runs on {device!r}: run it on a machine "
            f"with an NVIDIA GPU with device='cuda' (or 'auto') after {CUDA_EXTRA}, or leave it off")
