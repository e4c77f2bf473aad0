"""PAC-LoRA as SocialAlign builds it (Zhang et al. 2025; their layer is
``modeling_pac_lora/pac_lora_layer.py`` of Znull-1220/SocialAlign, re-implemented here).

In each adapted linear layer, ``n_experts`` LoRA experts share the frozen weight W. An
*analyze* gate mixes the experts' down-projections A_e (d → r) and a *compose* gate
their up-projections B_e (r → k); each gate is a small MLP (d → 32, GELU, → n_experts,
no bias) with a softmax. The analyze gate reads the layer's input on the tokens of the
**post** (SocialAlign's "news"), the compose gate on the tokens of the **user**
(their earlier replies); elsewhere a gate's input is zero, so, without bias, its
weights are uniform there::

    g_A = softmax(MLP_A(x · 1[post]))      g_B = softmax(MLP_B(x · 1[user]))
    y   = W x + (α / r) · Σ_e g_B,e · B_e (Σ_e' g_A,e' · A_e' x)

With one expert both gates are 1 and the layer is plain LoRA (``peft``: W x + (α/r) B A x);
B starts at zero, so an adapted model starts as its base. Where the spans are is told
to the layers for each forward pass by ``token_spans`` (``PACSpans``): one boolean mask
per span, over the positions of the whole sequence; the layers read the part of it
their input covers, so a cached prompt followed by generated tokens (outside both
spans) is gated as in training.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn

from crowdlens.crowd_response.mixture_lora import replace_linear_layers

#: SocialAlign's gate width and the projections it adapts.
GATE_HIDDEN = 32
PAC_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class PACSpans:
    """Where the post and the user are: (batch, positions) boolean masks over the whole
    sequence (prompt and what follows it)."""

    post: torch.Tensor
    user: torch.Tensor


class PACLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, n_experts: int = 3, rank: int = 8, alpha: float = 16.0,
                 gate_hidden: int = GATE_HIDDEN, dropout: float = 0.0):
        super().__init__()
        if n_experts < 1 or rank < 1 or gate_hidden < 1:
            raise ValueError(f"n_experts, rank and gate_hidden must be >= 1, got {n_experts}, {rank}, {gate_hidden}")
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.n_experts, self.rank, self.scaling = n_experts, rank, alpha / rank
        device = base.weight.device  # float32 adapters beside half-precision or 4-bit base weights
        self.lora_A = nn.Parameter(torch.empty(n_experts, rank, base.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(n_experts, base.out_features, rank, device=device))
        for expert in range(n_experts):
            nn.init.kaiming_uniform_(self.lora_A.data[expert], a=math.sqrt(5))

        def gate() -> nn.Sequential:
            return nn.Sequential(nn.Linear(base.in_features, gate_hidden, bias=False, device=device), nn.GELU(),
                                 nn.Linear(gate_hidden, n_experts, bias=False, device=device))

        self.analyze_gate, self.compose_gate = gate(), gate()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.spans: PACSpans | None = None
        self.position = 0  # where in the sequence this layer's next input starts
        self.kept: list[tuple[torch.Tensor, ...]] | None = None  # a list: each pass's gates and spans are kept

    def _span_masks(self, length: int, batch: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The post and user masks of the next ``length`` positions (False past the spans'
        end); None when no position of them can be in a span (no spans told, or tokens
        generated after the prompt)."""
        if self.spans is None:
            return None
        start, self.position = self.position, self.position + length
        if start >= self.spans.post.shape[1] and start >= self.spans.user.shape[1]:
            return None

        def window(mask: torch.Tensor) -> torch.Tensor:
            part = mask[:, start:start + length].to(device)
            if part.shape[1] < length:  # tokens after the prompt (a reply being scored or generated)
                part = torch.cat([part, torch.zeros(part.shape[0], length - part.shape[1], dtype=torch.bool,
                                                    device=device)], dim=1)
            return part.expand(batch, -1) if part.shape[0] == 1 else part

        return window(self.spans.post), window(self.spans.user)

    def gates(self, x: torch.Tensor, post: torch.Tensor, user: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per token, the analyze weights (from the post's tokens) and the compose weights
        (from the user's), each summing to 1 over the experts."""
        x = x.to(self.lora_A.dtype)
        analyze = torch.softmax(self.analyze_gate(x * post.unsqueeze(-1).to(x.dtype)), dim=-1)
        compose = torch.softmax(self.compose_gate(x * user.unsqueeze(-1).to(x.dtype)), dim=-1)
        return analyze, compose

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        x = self.dropout(x).to(self.lora_A.dtype)
        n_experts, rank, width = self.lora_A.shape
        masks = self._span_masks(x.shape[-2], x.shape[0], x.device)
        if masks is None and self.kept is None:
            # outside both spans a gate reads zeros, and without bias it is uniform: the
            # layer is the LoRA of the mean experts (every generated token takes this path)
            y = (x @ self.lora_A.mean(0).T) @ self.lora_B.mean(0).T
            return result + (self.scaling * y).to(result.dtype)
        if masks is None:
            empty = torch.zeros(x.shape[0], x.shape[-2], dtype=torch.bool, device=x.device)
            masks = empty, empty
        post, user = masks
        analyze, compose = self.gates(x, post, user)
        if self.kept is not None:
            self.kept.append((analyze.detach(), compose.detach(), post, user))
        # one matmul for all experts' A_e x, and one for Σ_e g_B,e B_e h = [B_1 … B_E] (g_B ⊗ h):
        # no (batch, seq, experts, out) tensor is ever built
        down = (x @ self.lora_A.reshape(n_experts * rank, width).T).unflatten(-1, (n_experts, rank))
        h = (analyze.unsqueeze(-1) * down).sum(dim=-2)                   # analyze mix → (b, s, r)
        mixed = (compose.unsqueeze(-1) * h.unsqueeze(-2)).flatten(-2)    # (b, s, experts · r)
        y = mixed @ self.lora_B.permute(0, 2, 1).reshape(n_experts * rank, -1)  # compose mix → (b, s, out)
        return result + (self.scaling * y).to(result.dtype)

    def extra_repr(self) -> str:
        return (f"in={self.base.in_features}, out={self.base.out_features}, experts={self.n_experts}, "
                f"rank={self.rank}")


def apply_pac_lora(model: nn.Module, target_modules: Iterable[str] = PAC_TARGET_MODULES, n_experts: int = 3,
                   rank: int = 8, alpha: float = 16.0, gate_hidden: int = GATE_HIDDEN, dropout: float = 0.0
                   ) -> nn.Module:
    """Replace every ``nn.Linear`` whose name ends with one of ``target_modules`` by a
    ``PACLoRALinear`` and freeze everything else; returns the model (changed in place)."""
    return replace_linear_layers(model, target_modules, lambda linear: PACLoRALinear(
        linear, n_experts, rank, alpha, gate_hidden, dropout))


def pac_layers(model: nn.Module) -> list[PACLoRALinear]:
    return [m for m in model.modules() if isinstance(m, PACLoRALinear)]


@contextlib.contextmanager
def token_spans(model: nn.Module, spans: PACSpans) -> Iterator[None]:
    """Tell every PAC layer of ``model`` where the post and the user are for the forward
    passes inside the block (one training step; a prompt and the tokens generated or
    scored after it); outside it, no token belongs to a span."""
    layers = pac_layers(model)
    for layer in layers:
        layer.spans, layer.position = spans, 0
    try:
        yield
    finally:
        for layer in layers:
            layer.spans, layer.position = None, 0
