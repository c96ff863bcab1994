"""The SDLGM as a codec, beside the baselines of ``training.codecs``: a trained model in torch
(``SDLGMCodec``, and ``SDLGMLog1pCodec`` for one trained on log1p bitrates) and an exported bundle run the
way the service runs it (``BundleCodec``, ``SearchBundleCodec``). All send the deterministic code as the
service's fixed-length `enum` format (bundle.formats): the code's index among all codes the model can emit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle import formats
from bundle.formats import CodeSpace
from bundle.runtime import open_bundle
from model.sdlgm import SDLGM
from training.codecs import Codec

ENUM = ("the service's enum format: the code's index among the model's N codes, ceil(log2 N / 8) bytes "
        "(a shared code: N = C(K + L0, L0); a product code of M slots of 256: M bytes)")


class Log1pBitrates:
    """log1p on the columns of the named KPIs (raw bitrates are >= 0), expm1 back; other columns untouched."""

    def __init__(self, feature_names: Sequence[str], kpis: Sequence[str]) -> None:
        self.cols = np.array([n.split("@")[0] in kpis for n in feature_names])

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float64)
        out[:, self.cols] = np.log1p(np.maximum(out[:, self.cols], 0.0))
        return out

    def inverse(self, y: np.ndarray) -> np.ndarray:
        out = np.array(y, dtype=np.float64)
        out[:, self.cols] = np.expm1(out[:, self.cols])
        return out


class SDLGMCodec(Codec):
    """A trained SDLGM in torch: the deterministic code (model.encode, identical to the service's by the
    export parity tests), sent in the service's enum format."""

    family = "SDLGM"
    role = "sdlgm"
    message = ENUM
    transform: Log1pBitrates | None = None

    def __init__(self, model: SDLGM, iterations: int) -> None:
        self.model = model.eval()
        self.space = CodeSpace(model.cfg.K, model.cfg.L0)
        self.params = {"K": model.cfg.K, "L0": model.cfg.L0, "iterations": iterations}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"SDLGM K={params['K']} L0={params['L0']}"

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        v = self.transform.forward(x) if self.transform else np.asarray(x, np.float64)
        xs = torch.from_numpy(v.astype(np.float32))
        return self.model.encode(self.model.standardize(xs))[1].numpy().astype(np.int64)

    @torch.no_grad()
    def decode(self, symbols: np.ndarray) -> np.ndarray:
        out = self.model.decoder(torch.from_numpy(symbols.astype(np.float32)))
        y = (out * self.model.x_std + self.model.x_mean).double().numpy()
        return self.transform.inverse(y) if self.transform else y

    def pack(self, row: np.ndarray) -> bytes:
        return formats.pack("enum", row[None], self.space, None)[0]

    def code_features(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.astype(np.float64)


class SDLGMLog1pCodec(SDLGMCodec):
    """An SDLGM trained on log1p bitrates (standardization refitted on the transformed windows): the
    transform before the encoder, its inverse after the decoder."""

    family = "SDLGM, log1p bitrates"

    def __init__(self, model: SDLGM, iterations: int, transform: Log1pBitrates) -> None:
        super().__init__(model, iterations)
        self.transform = transform

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"{super().label(params)} log1p bitrates"


class BundleCodec(Codec):
    """An exported bundle run the way the service runs it: onnxruntime graphs (raw units in and out)
    and the numpy deterministic code. ``root``: the bundle path is recorded relative to it."""

    family = "SDLGM, committed bundle"
    role = "sdlgm"
    message = ENUM

    def __init__(self, bundle: Path, root: Path | None = None) -> None:
        self.runtime = open_bundle(bundle)
        self.manifest = m = self.runtime.manifest
        shown = bundle.relative_to(root) if root is not None and bundle.is_relative_to(root) else bundle
        model = m.training.get("model") if m.training else None
        self.params = {"K": m.K, "L0": m.L0, "iterations": m.training.get("step") if m.training else None,
                       "bundle": str(shown), "fingerprint": m.fingerprint, "gate": m.gate,
                       "kind": model.get("kind") if isinstance(model, dict) else None}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"SDLGM K={params['K']} L0={params['L0']} (committed bundle)"

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self.runtime.encode(np.ascontiguousarray(x, dtype=np.float32))[1]

    def decode(self, symbols: np.ndarray) -> np.ndarray:
        return np.asarray(self.runtime.decode(symbols.astype(np.float32)), dtype=np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return formats.pack("enum", row[None], self.manifest.code_space, None)[0]

    def code_features(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.astype(np.float64)


class SearchBundleCodec(BundleCodec):
    """A bundle of the SDLGM with a product code found by search (model.search), trained in the study."""

    family = "SDLGM, product code by search"

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        variant = f", {params['variant']}" if params.get("variant") else ""  # one of several candidates at M
        return f"SDLGM-search M={params['L0']} (K={params['K']}){variant}"
