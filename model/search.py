"""The SDLGM with a product code found by search (kind "sdlgm-search"): the 5G KPI default.

Generative model: M slots, each always on, slot m draws one of its own C categories uniformly (a
partitioned code with no "off": K = M C counts, exactly one per block, so the code is M log2 C bits and
with C = 256 exactly M bytes); x ~ N(g(z), sigma^2) with a fixed sigma on standardized data and the
additive decoder
    g(z) = T z + r(T z),   T z = sum_m T_m[j_m]   (a table of M x C vectors of D, the categories' means)
where r is an MLP whose last layer starts at zero, so that at step 0 the model decodes as T alone.

Posterior: a point mass at the code the encoder finds (KL = M log C against the uniform prior, a constant):
  1. beam search on the linear part T (the residual-quantization encoder: keep the `beam` best partial
     codes slot after slot; `train_beam` of them while training), then
  2. `sweeps` rounds of coordinate descent under the whole decoder g: for each slot in turn, of the
     `candidates` categories nearest under T (the others held), the one with the least ||x - g(z)||^2.
Both are static-shaped tensor programs, so the bundle's encoder graph runs the same search in onnxruntime
and gives the posterior's log-probabilities (B, M, C): 0 at the code and POINT_MASS_LOG elsewhere, so
that a sample of the bundle's posterior (/encode with "stochastic") is the code itself.

Training (`initialise`, then the one loop): T starts at faiss's residual-quantization codebooks fitted on
the training windows (beam `train_beam`), so the model starts exactly at RQ; each step encodes the batch by beam
search on the current T (no gradient: hard EM) and fits g by the Gaussian likelihood. T moves at
`table_lr_scale` times the loop's rate (T = T0 + scale * delta, delta trained: Adam's steps are about lr
in delta). Why this form: docs/kpi.md ("The SDLGM point") and ../shared/REFERENCES.md: amortized encoders
over one-hot codes overfit the 58 training traces, the additive code generalizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from model.family import Batch, DataShape, Family, Generative, Options, Widths
from model.relax import Mode
from model.sdlgm import log_likelihood, mlp

POINT_MASS_LOG = -1e4  # log q of a category other than the code's: no Gumbel draw reaches it


@dataclass(frozen=True)
class SearchConfig:
    D: int
    M: int = 4  # slots: bytes per code with C = 256
    C: int = 256  # categories per slot
    decoder: tuple[int, ...] = (128, 256)  # widths of r
    sigma: float = 0.5  # the fixed likelihood scale on standardized data
    beam: int = 64  # partial codes the encoder's beam search keeps
    train_beam: int = 16  # the same while training (and for faiss's codebooks), where it runs every step
    sweeps: int = 1
    candidates: int = 16  # categories per slot the coordinate descent tries
    table_lr_scale: float = 0.1
    init_rows: int = 20_000  # training rows faiss fits the initial codebooks on
    likelihood: Literal["gaussian"] = "gaussian"

    def __post_init__(self) -> None:
        if self.C > 256 and self.init_rows:
            raise ValueError("faiss's residual quantizer initialises C <= 256 categories (8 bits)")

    @property
    def K(self) -> int:
        return self.M * self.C

    @property
    def L0(self) -> int:
        return self.M

    @property
    def lambda0(self) -> float:
        return 1.0  # every slot is on

    @property
    def gate(self) -> Literal["on"]:
        return "on"


class SearchSDLGM(Generative):
    cfg: SearchConfig
    x_mean: torch.Tensor
    x_std: torch.Tensor
    table0: torch.Tensor
    log_sigma: torch.Tensor

    def __init__(self, cfg: SearchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("table0", torch.randn(cfg.M, cfg.C, cfg.D) * 0.1)
        self.delta = nn.Parameter(torch.zeros(cfg.M, cfg.C, cfg.D))
        self.residual = mlp([cfg.D, *cfg.decoder, cfg.D])
        last = self.residual[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.register_buffer("x_mean", torch.zeros(cfg.D))
        self.register_buffer("x_std", torch.ones(cfg.D))
        self.register_buffer("log_sigma", torch.tensor(math.log(cfg.sigma)).expand(cfg.D).clone())

    # ------------------------------------------------------------------------------ the decoder

    @property
    def table(self) -> torch.Tensor:
        """T (M, C, D)."""
        return self.table0 + self.cfg.table_lr_scale * self.delta

    def decode_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        """(B, M) category per slot -> g(z) (B, D), standardized."""
        t = self.table
        linear = t[torch.arange(self.cfg.M), symbols].sum(1)  # (B, D)
        return linear + self.residual(linear)

    def decode_out(self, z: torch.Tensor) -> torch.Tensor:
        """(B, K) counts (one per block) -> g(z) (B, D), standardized."""
        linear = z @ self.table.reshape(self.cfg.K, self.cfg.D)
        return linear + self.residual(linear)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_out(z) * self.x_std + self.x_mean

    def decoder_scale(self) -> list[float]:
        return (self.cfg.sigma * self.x_std).tolist()

    def standardize(self, x_raw: torch.Tensor) -> torch.Tensor:
        return (x_raw - self.x_mean) / self.x_std

    def recon_log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return log_likelihood(x, out, "gaussian", self.log_sigma)

    # ------------------------------------------------------------------------------ the encoder

    def beam_search(self, x: torch.Tensor, beam: int | None = None) -> torch.Tensor:
        """(B, D) standardized -> (B, M) the best code under T of the beam search (cfg.beam wide)."""
        width = self.cfg.beam if beam is None else beam
        t = self.table
        B, (M, C, D) = x.shape[0], t.shape
        norms = (t * t).sum(-1)  # (M, C)
        residual = x.unsqueeze(1)  # (B, 1, D): one partial code
        dist = x.new_zeros(B, 1)
        chosen = torch.zeros(B, 1, 0, dtype=torch.long, device=x.device)
        for m in range(M):
            nb = residual.shape[1]
            # ||r - t||^2 - ||r||^2 = ||t||^2 - 2 r.t, added to the partial code's distance
            cand = dist.unsqueeze(-1) + norms[m] - 2 * residual @ t[m].T  # (B, nb, C)
            keep = min(width, nb * C)
            dist, flat = torch.topk(cand.reshape(B, nb * C), keep, dim=1, largest=False, sorted=True)
            parent, cat = flat // C, flat % C
            residual = torch.gather(residual, 1, parent.unsqueeze(-1).expand(B, keep, D)) - t[m][cat]
            chosen = torch.cat([torch.gather(chosen, 1, parent.unsqueeze(-1).expand(B, keep, m)),
                                cat.unsqueeze(-1)], dim=2)
        return chosen[:, 0]

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, M, C) log q of each slot's category: 0 at the searched code,
        POINT_MASS_LOG elsewhere (what the encoder graph gives)."""
        cfg = self.cfg
        t = self.table
        sym = self.beam_search(x)
        B = x.shape[0]
        rows = torch.arange(cfg.M)
        onehot = torch.zeros(B, cfg.M, cfg.C, dtype=x.dtype, device=x.device)
        for _ in range(cfg.sweeps):
            for m in range(cfg.M):
                rest = t[rows, sym].sum(1) - t[m][sym[:, m]]  # (B, D): the other slots' part of T z
                target = x - rest
                # the `candidates` categories of slot m nearest to what the others leave, under T
                lin = (t[m] * t[m]).sum(-1) - 2 * target @ t[m].T  # (B, C)
                k = min(cfg.candidates, cfg.C)
                _, cand = torch.topk(lin, k, dim=1, largest=False, sorted=True)  # (B, k)
                linear = rest.unsqueeze(1) + t[m][cand]  # (B, k, D)
                out = linear + self.residual(linear)
                err = ((x.unsqueeze(1) - out) ** 2).sum(-1)  # (B, k)
                sym = sym.clone()
                sym[:, m] = torch.gather(cand, 1, err.argmin(1, keepdim=True)).squeeze(1)
        return (onehot.scatter_(2, sym.unsqueeze(-1), 1.0) - 1.0) * -POINT_MASS_LOG

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, M) the code the service sends."""
        return self.scores(x).argmax(-1)

    def pi_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x)

    def lambda_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 2)  # no gate: every slot is on

    # ------------------------------------------------------------------------------ the model

    def counts(self, symbols: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(symbols.shape[0], self.cfg.M, self.cfg.C, dtype=torch.long, device=symbols.device)
        return z.scatter_(2, symbols.unsqueeze(-1), 1).flatten(1)

    def forward(self, x: torch.Tensor, tau: torch.Tensor | float = 1.0, tau_z: torch.Tensor | float = 1.0,
                mode: Mode = "st") -> dict[str, torch.Tensor]:
        """ELBO terms at the point-mass posterior: the beam-search code while training (hard EM), the
        full search code otherwise (what the service sends). tau and mode do not apply."""
        with torch.no_grad():
            sym = self.beam_search(x, self.cfg.train_beam) if self.training else self.search(x)
        recon = self.recon_log_likelihood(x, self.decode_symbols(sym))
        kl = x.new_full((x.shape[0],), self.cfg.M * math.log(self.cfg.C))
        z = self.counts(sym).to(x.dtype)
        return {"elbo": recon - kl, "recon": recon, "kl_gate": torch.zeros_like(kl), "kl_code": kl,
                "L": z.sum(-1), "z": z}

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self(batch.x)
        return {"loss": -out["recon"].mean(), **{k: v for k, v in out.items() if k != "z"}}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = self.counts(self.search(x))
        return counts.sum(-1), counts

    @torch.no_grad()
    def importance_samples(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """q is a point mass: S copies of the code, log p(z) - log q(z) = -M log C."""
        z = self.counts(self.search(x)).to(x.dtype)
        return z.expand(samples, *z.shape), x.new_full((samples, x.shape[0]), -self.cfg.M * math.log(self.cfg.C))

    def deployed(self) -> SearchSDLGM:
        return self

    def initialise(self, x: torch.Tensor) -> None:
        """T0 = faiss's residual-quantization codebooks on (a seeded sample of) the standardized rows x."""
        import faiss  # the train extra

        cfg = self.cfg
        if not cfg.init_rows:
            return
        keep = np.random.default_rng(0).permutation(len(x))[: cfg.init_rows]
        data = np.ascontiguousarray(x[torch.from_numpy(keep)].numpy(), dtype=np.float32)
        rq = faiss.ResidualQuantizer(cfg.D, cfg.M, int(math.log2(cfg.C)))
        rq.max_beam_size = cfg.train_beam
        rq.train(data)
        books = faiss.vector_to_array(rq.codebooks).reshape(cfg.M, cfg.C, cfg.D)
        self.table0.copy_(torch.from_numpy(books))
        self.delta.data.zero_()


class SearchOptions(Options):
    """`model:` of kind sdlgm-search; D comes from the data, which must be Gaussian (standardized)."""

    kind: Literal["sdlgm-search"] = "sdlgm-search"
    M: int = Field(SearchConfig.M, gt=0, le=255)
    C: int = Field(SearchConfig.C, gt=1, le=256)
    decoder: Widths = SearchConfig.decoder
    sigma: float = Field(SearchConfig.sigma, gt=0)
    beam: int = Field(SearchConfig.beam, gt=0)
    train_beam: int = Field(SearchConfig.train_beam, gt=0)
    sweeps: int = Field(SearchConfig.sweeps, ge=0)
    candidates: int = Field(SearchConfig.candidates, gt=0)
    table_lr_scale: float = Field(SearchConfig.table_lr_scale, ge=0)
    init_rows: int = Field(SearchConfig.init_rows, ge=0)

    def config(self, shape: DataShape) -> SearchConfig:
        if shape.likelihood != "gaussian":
            raise ValueError("model kind sdlgm-search models real-valued (Gaussian) data")
        return SearchConfig(D=shape.D, M=self.M, C=self.C, decoder=self.decoder, sigma=self.sigma, beam=self.beam,
                            train_beam=self.train_beam,
                            sweeps=self.sweeps, candidates=self.candidates, table_lr_scale=self.table_lr_scale,
                            init_rows=self.init_rows)


FAMILY = Family("sdlgm-search", SearchSDLGM, SearchConfig, SearchOptions, targets="none",
                graphs=("encoder", "decoder"))
