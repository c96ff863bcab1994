"""The SDLGM with a product code found by search (model/search.py): the beam search, the coordinate
descent, the start at faiss's residual quantizer, training with the best validation state kept, and the
bundle it exports (gate "on": M bytes in the enum format) as the service runs it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from bundle import formats
from bundle.runtime import open_bundle
from model import registry
from model.family import DataShape
from model.search import SearchSDLGM
from training.config import load_config
from training.export import export_trained
from training.tasks import load_task, standardized
from training.trainer import CHECKPOINT, METRICS, load_checkpoint, train

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw: object) -> SearchSDLGM:
    torch.manual_seed(0)
    opts = {"M": 2, "C": 4, "decoder": [8], "beam": 16, "train_beam": 16, "init_rows": 0, **kw}
    return registry.family("sdlgm-search").build(DataShape(D=3, likelihood="gaussian"), **opts)


def test_a_beam_as_wide_as_the_code_space_finds_the_best_code_under_the_table() -> None:
    m = tiny()
    x = torch.randn(50, 3)
    got = m.beam_search(x)
    t = m.table.detach()
    for i in range(50):
        errs = {c: float(((x[i] - t[0, c[0]] - t[1, c[1]]) ** 2).sum()) for c in itertools.product(range(4), repeat=2)}
        best = min(errs, key=errs.__getitem__)
        assert errs[tuple(got[i].tolist())] == pytest.approx(errs[best], abs=1e-5)
    greedy = m.beam_search(x, beam=1)  # a narrower beam is never better
    err = lambda s: ((m.table[torch.arange(2), s].sum(1) - x) ** 2).sum(1)  # noqa: E731
    assert (err(got) <= err(greedy) + 1e-6).all()


def test_coordinate_descent_never_raises_the_error_under_the_whole_decoder() -> None:
    m = tiny(candidates=4)
    with torch.no_grad():
        for p in m.residual.parameters():
            p.normal_(0, 0.5)  # a decoder far from linear, where the search has work to do
    x = torch.randn(200, 3)
    err = lambda s: ((m.decode_symbols(s) - x) ** 2).sum(1)  # noqa: E731
    beam, searched = m.beam_search(x), m.search(x)
    assert (err(searched) <= err(beam) + 1e-6).all() and (err(searched) < err(beam) - 1e-4).any()
    none = SearchSDLGM(tiny(sweeps=0).cfg)
    none.load_state_dict(m.state_dict())
    assert torch.equal(none.search(x), beam)  # no sweep: the beam search's code
    L, counts = m.encode(x)
    assert (L == 2).all() and (counts.view(200, 2, 4).sum(-1) == 1).all()


def test_the_start_is_faiss_residual_quantization_and_the_decoder_is_its_sum() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(3000, 6)).astype(np.float32))
    m = registry.family("sdlgm-search").build(DataShape(D=6, likelihood="gaussian"), M=2, C=16, decoder=[8],
                                              beam=4, train_beam=4, init_rows=3000)
    m.initialise(x)
    rq = faiss.ResidualQuantizer(6, 2, 4)
    rq.max_beam_size = 4
    rq.train(x.numpy()[np.random.default_rng(0).permutation(3000)])  # the rows initialise() fits on, in order
    books = faiss.vector_to_array(rq.codebooks).reshape(2, 16, 6)
    assert np.allclose(m.table.detach().numpy(), books)
    ours = m.decode_symbols(m.beam_search(x)).detach().numpy()  # the residual MLP starts at zero
    theirs = rq.decode(rq.compute_codes(x.numpy()))
    assert np.mean((ours - x.numpy()) ** 2) == pytest.approx(np.mean((theirs - x.numpy()) ** 2), rel=1e-3)


@pytest.fixture(scope="module")
def kpi_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """configs/kpi5g.yaml made small: 2 bytes, a short run with the best validation state kept, exported."""
    root = tmp_path_factory.mktemp("search")
    cfg = load_config(REPO / "configs" / "kpi5g.yaml", {
        "model.M": 2, "model.init_rows": 2000, "model.decoder": [16], "model.beam": 8, "train.iterations": 40,
        "train.eval_every": 10, "train.checkpoint_every": 20, "train.lr": 0.01, "data.stride": 10})
    task = load_task(cfg.data, 0)
    model, temps = train(cfg, task, root / "run", progress=False)
    export_trained(cfg, model, temps, 40, task, root / "bundle", name="search")
    return root / "run", root / "bundle"


def test_keep_best_ends_with_the_state_of_the_least_validation_error(kpi_run: tuple[Path, Path]) -> None:
    run, _ = kpi_run
    valid = [json.loads(x) for x in (run / METRICS).read_text().splitlines() if '"valid"' in x]
    best = min(valid, key=lambda r: r["discrete_neg_elbo"])
    cfg, model, temps, ck = load_checkpoint(run / CHECKPOINT)
    assert ck["best_step"] == best["step"] and ck["step"] == 40
    task = load_task(cfg.data, 0)
    x = standardized(task, task.valid)
    model.eval()
    with torch.no_grad():
        nrmse = float(((model.decode_symbols(model.search(x)) - x) ** 2).mean().sqrt())
    assert nrmse == pytest.approx(best["nrmse"], rel=1e-4)


def test_the_bundle_sends_m_bytes_and_decodes_as_the_model(kpi_run: tuple[Path, Path]) -> None:
    run, bundle = kpi_run
    rt = open_bundle(bundle)
    m = rt.manifest
    assert (m.gate, m.K, m.L0, m.partitions, m.lambda0) == ("on", 512, 2, 2, 1.0)
    assert m.graphs.sparsity is None and m.formats == ("v1", "enum", "range")
    assert m.evaluation["bytes_per_format"]["enum"] == 2.0 and m.code_space.enum_bytes == 2
    cfg, model, _, _ = load_checkpoint(run / CHECKPOINT)
    task = load_task(cfg.data, 0)
    x = task.test[:100]
    _, counts = rt.encode(x)
    _, ref = model.eval().encode(model.standardize(torch.from_numpy(x)))
    assert (counts != ref.numpy()).any(axis=1).mean() <= 0.02  # float32 near-ties aside, the same code
    sampled = rt.encode(x, np.random.default_rng(0))[1]  # the posterior is a point mass at the code
    assert np.array_equal(sampled, counts)
    blobs = formats.pack("enum", counts, m.code_space, None)
    assert {len(b) for b in blobs} == {2}
    back = np.stack([formats.unpack("enum", b, m.code_space, None) for b in blobs])
    assert np.array_equal(back, counts)
    x_hat = rt.decode(back.astype(np.float32))
    with torch.no_grad():
        want = model.reconstruct(torch.from_numpy(back.astype(np.float32))).numpy()
    assert np.allclose(x_hat, want, rtol=1e-4, atol=1e-3 * np.asarray(m.standardization.std).max())
