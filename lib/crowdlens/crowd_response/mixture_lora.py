"""A PAC-style mixture of LoRA experts (SocialAlign's PAC-LoRA, after Zhang et al. 2025).

In each adapted linear layer, ``n_experts`` LoRA experts share the frozen base
weight. Two softmax gates, computed per token from the layer input, mix them: the
*analyze* gate mixes the experts' down-projections A_e (input → rank r), the *compose*
gate their up-projections B_e (rank r → output)::

    h = Σ_e softmax(G_a x / τ)_e · A_e x
    y = W x + (α / r) · Σ_e softmax(G_c x / τ)_e · B_e h

With one expert both gates are 1 and the layer is plain LoRA (``peft``'s ``y = W x +
(α/r) B A x``). B starts at zero, so an adapted model starts as the base model.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


class MixtureLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, n_experts: int = 3, rank: int = 8, alpha: float = 16.0,
                 temperature: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if n_experts < 1 or rank < 1:
            raise ValueError(f"n_experts and rank must be >= 1, got {n_experts} and {rank}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.n_experts, self.rank, self.temperature = n_experts, rank, temperature
        self.scaling = alpha / rank
        # float32 beside the base weights, whatever their device and precision (half or 4-bit on a GPU)
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(n_experts, rank, base.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(n_experts, base.out_features, rank, device=device))
        for expert in range(n_experts):  # peft's initialisation of A
            nn.init.kaiming_uniform_(self.lora_A.data[expert], a=math.sqrt(5))
        self.analyze_gate = nn.Linear(base.in_features, n_experts, device=device)
        self.compose_gate = nn.Linear(base.in_features, n_experts, device=device)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The analyze and compose gate weights for each token, each summing to 1 over experts."""
        x = x.to(self.analyze_gate.weight.dtype)
        return (torch.softmax(self.analyze_gate(x) / self.temperature, dim=-1),
                torch.softmax(self.compose_gate(x) / self.temperature, dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        x = self.dropout(x).to(self.lora_A.dtype)
        analyze, compose = self.gates(x)
        down = torch.einsum("...i,eri->...er", x, self.lora_A)          # every expert's A_e x
        h = (analyze.unsqueeze(-1) * down).sum(dim=-2)                   # analyze mix → (..., r)
        up = torch.einsum("...r,eor->...eo", h, self.lora_B)             # every expert's B_e h
        y = (compose.unsqueeze(-1) * up).sum(dim=-2)                     # compose mix → (..., out)
        return result + (self.scaling * y).to(result.dtype)

    def extra_repr(self) -> str:
        return (f"in={self.base.in_features}, out={self.base.out_features}, experts={self.n_experts}, "
                f"rank={self.rank}, temperature={self.temperature}")


def replace_linear_layers(model: nn.Module, target_modules: Iterable[str], make_layer) -> nn.Module:
    """Freeze ``model`` and replace every ``nn.Linear`` whose name ends with one of
    ``target_modules`` by ``make_layer(linear)``; returns the model (changed in place).
    Shared by the per-token mixture and PAC-LoRA."""
    targets = tuple(target_modules)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    replaced = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name.endswith(targets):
                setattr(module, child_name, make_layer(child))
                replaced += 1
    if replaced == 0:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no linear layer ends with {list(targets)}; this model's linear layers are named {names}")
    return model


def apply_mixture_lora(model: nn.Module, target_modules: Iterable[str] = ("q_proj", "v_proj"), n_experts: int = 3,
                       rank: int = 8, alpha: float = 16.0, temperature: float = 1.0, dropout: float = 0.0
                       ) -> nn.Module:
    """Replace every ``nn.Linear`` whose name ends with one of ``target_modules`` by a
    ``MixtureLoRALinear`` and freeze everything else; returns the model (changed in place)."""
    return replace_linear_layers(model, target_modules, lambda linear: MixtureLoRALinear(
        linear, n_experts, rank, alpha, temperature, dropout))


def mixture_layers(model: nn.Module) -> list[MixtureLoRALinear]:
    return [m for m in model.modules() if isinstance(m, MixtureLoRALinear)]


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
