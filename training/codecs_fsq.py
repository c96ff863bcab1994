"""Finite scalar quantization (FSQ; Mentzer et al., 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple") as a codec beside ``training.codecs``: a learned nonlinear quantizer with the SDLGM's MLP sizes.

An MLP encoder projects the standardized vector to d dimensions; dimension i is bounded by tanh to
L_i levels and rounded (straight-through gradient); an MLP decoder maps the rounded values back. The
implicit codebook is the product of the levels, so nothing collapses and nothing needs an EMA. The
message is the code's index in mixed radix: ceil(log2(prod L_i) / 8) bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import groupby
from typing import Any

import numpy as np
import torch
from torch import nn

from model.sdlgm import mlp
from training.codecs import Standardized
from training.loop import Loop, LoopConfig, Schedule, run


def levels_for(nbytes: int, bits_per_dim: int = 3) -> tuple[int, ...]:
    """Levels whose product is exactly 2^(8 nbytes): dimensions of 2^bits_per_dim levels, and one smaller
    power of two for the remaining bits. levels_for(1) == (8, 8, 4)."""
    full, rest = divmod(8 * nbytes, bits_per_dim)
    return (1 << bits_per_dim,) * full + ((1 << rest,) if rest else ())


class _FSQNet(nn.Module):
    half_range: torch.Tensor  # (d,) buffers, one value per dimension
    offset: torch.Tensor
    shift: torch.Tensor
    width: torch.Tensor

    def __init__(self, D: int, levels: Sequence[int], encoder: Sequence[int], decoder: Sequence[int]) -> None:
        super().__init__()
        self.encoder = mlp([D, *encoder, len(levels)])
        self.decoder = mlp([len(levels), *decoder, D])
        L = torch.tensor(levels, dtype=torch.float32)
        half_range = (L - 1) * (1 + 1e-3) / 2  # a little over (L - 1) / 2, so that the end levels are reached
        offset = torch.where(L % 2 == 0, 0.5, 0.0)  # even L: levels -L/2 .. L/2 - 1
        self.register_buffer("half_range", half_range)
        self.register_buffer("offset", offset)
        self.register_buffer("shift", torch.atanh(offset / half_range))  # bound(0) == 0
        self.register_buffer("width", torch.div(L, 2, rounding_mode="floor"))

    def bound(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) pre-activations -> (B, d) values whose rounding is one of each dimension's levels."""
        return torch.tanh(h + self.shift) * self.half_range - self.offset

    def quantize(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, d) rounded values scaled to about [-1, 1], with the straight-through gradient."""
        z = self.bound(h)
        return (z + (torch.round(z) - z).detach()) / self.width


class FSQ(Standardized):
    """FSQ with an MLP encoder and decoder of the given hidden sizes; MSE on standardized data, Adam with
    cosine decay from lr to lr_final over ``iterations`` steps of ``batch_size`` random training rows."""

    family = "finite scalar quantization"
    message = "d rounded values, one integer in mixed radix below prod L_i: ceil(log2(prod L_i) / 8) bytes"

    def __init__(self, levels: Sequence[int], encoder: Sequence[int] = (256, 128), decoder: Sequence[int] = (128, 256),
                 iterations: int = 6000, batch_size: int = 100, lr: float = 1e-3, lr_final: float = 1e-4,
                 seed: int = 0) -> None:
        if not levels or min(levels) < 2:
            raise ValueError(f"levels must be at least 2 each, got {list(levels)}")
        self.levels, self.encoder_sizes, self.decoder_sizes = tuple(levels), tuple(encoder), tuple(decoder)
        self.iterations, self.batch_size, self.lr, self.lr_final, self.seed = iterations, batch_size, lr, lr_final, seed
        self.nbytes = math.ceil((math.prod(self.levels) - 1).bit_length() / 8)
        self.params = {"levels": list(self.levels), "d": len(self.levels), "iterations": iterations}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        runs = [(L, len(list(g))) for L, g in groupby(params["levels"])]
        return "FSQ " + " x ".join(f"{L}^{n}" if n > 1 else str(L) for L, n in runs)

    def _fit(self, x: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        self.net = net = _FSQNet(x.shape[1], self.levels, self.encoder_sizes, self.decoder_sizes)
        data = torch.from_numpy(x.astype(np.float32))

        def step_loss(idx: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
            xb = data[idx]
            return {"loss": ((net.decoder(net.quantize(net.encoder(xb))) - xb) ** 2).sum(1).mean()}

        cfg = LoopConfig(steps=self.iterations, batch_size=self.batch_size, lr=self.lr, order="replacement",
                         seed=self.seed, schedule=Schedule("cosine", lr_final=self.lr_final))
        run(Loop(cfg, net.parameters(), len(data), step_loss, [net]))
        net.eval()

    @torch.no_grad()
    def _encode(self, x: np.ndarray) -> np.ndarray:
        z = self.net.bound(self.net.encoder(torch.from_numpy(x.astype(np.float32))))
        return (torch.round(z) + self.net.width).numpy().astype(np.int64)  # (N, d) in [0, L_i)

    def code_values(self, symbols: np.ndarray) -> np.ndarray:
        """(N, d) level indices -> (N, d) the decoder's input, about [-1, 1]."""
        width = self.net.width.numpy().astype(np.float64)
        return (symbols - width) / width

    @torch.no_grad()
    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(self.code_values(symbols).astype(np.float32))
        return self.net.decoder(z).double().numpy()

    def pack(self, row: np.ndarray) -> bytes:
        index = 0
        for level, count in zip(reversed(self.levels), reversed(row.tolist()), strict=True):
            index = index * level + int(count)
        return index.to_bytes(self.nbytes, "little")

    def code_features(self, symbols: np.ndarray) -> np.ndarray:
        return self.code_values(symbols)
