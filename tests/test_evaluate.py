"""The evaluation's figures against hand computations, brute-force loops and enumeration: the Gaussian
errors in original units (`training.evaluate.gaussian_errors`), the threshold choice (`choose_threshold`:
best micro F1 on the validation split, the first on ties), the per-KPI RMSE of time-major windows
(`training.bundle_eval.rmse_per_kpi`), a bundle's recorded figures (`bundle_evaluation`), and every
figure of `evaluate` on tiny models (exact where exact, within 5 standard errors where sampled)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bundle import codes
from bundle.manifest import load_manifest
from model.dis import DisConfig, SDLGMDis
from model.gsvae import GSVAE, GSVAEConfig
from model.sdlgm import SDLGM, SDLGMConfig, log_likelihood
from training.bundle_eval import bundle_evaluation, rmse_per_kpi
from training.config import Temperature
from training.evaluate import (
    choose_threshold,
    evaluate,
    evaluate_labels,
    evaluation_rows,
    f1_scores,
    gaussian_errors,
)
from training.tasks import Task
from training.temperatures import Temperatures

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "kpi5g"


def task_of(valid: np.ndarray, mean: np.ndarray, std: np.ndarray, likelihood: str = "gaussian",
            kpis: tuple[str, ...] | None = None, y_valid: np.ndarray | None = None) -> Task:
    D = valid.shape[1]
    empty = np.zeros((0, D), np.float32)
    return Task(empty, valid.astype(np.float32), empty, [f"f{j}" for j in range(D)], likelihood,
                mean.astype(np.float32), std.astype(np.float32), y_valid=y_valid, kpis=kpis)


def assert_figures(got: dict[str, object], want: dict[str, object], rel: float) -> None:
    """The same keys, and the same numbers within rel, one level of nested dicts included."""
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, dict):
            assert sorted(got[key]) == sorted(value), key  # type: ignore[call-overload]
            assert got[key] == pytest.approx(value, rel=rel), key
        else:
            assert got[key] == pytest.approx(value, rel=rel), key


# --- rmse_per_kpi -------------------------------------------------------------------------------------


def rmse_per_kpi_loops(sq_err: np.ndarray, kpis: tuple[str, ...]) -> dict[str, float]:
    """Feature j of a time-major window is KPI j % n at second j // n."""
    n = len(kpis)
    sums, counts = dict.fromkeys(kpis, 0.0), dict.fromkeys(kpis, 0)
    for row in sq_err:
        for j, e in enumerate(row):
            sums[kpis[j % n]] += float(e)
            counts[kpis[j % n]] += 1
    return {k: math.sqrt(sums[k] / counts[k]) for k in kpis}


def test_rmse_per_kpi_by_hand() -> None:
    # two seconds of three KPIs: [a@t0, b@t0, c@t0, a@t1, b@t1, c@t1]
    sq = np.array([[1.0, 4.0, 9.0, 3.0, 0.0, 7.0]])
    got = rmse_per_kpi(sq, ("a", "b", "c"))
    assert got == pytest.approx({"a": math.sqrt(2.0), "b": math.sqrt(2.0), "c": math.sqrt(8.0)}, rel=1e-12)
    assert list(got) == ["a", "b", "c"]


@pytest.mark.parametrize(("window", "n_kpi"), [(3, 2), (2, 5), (4, 4), (1, 3)])
def test_rmse_per_kpi_against_loops(window: int, n_kpi: int) -> None:
    kpis = tuple(f"k{i}" for i in range(n_kpi))
    sq = np.random.default_rng(window * 10 + n_kpi).exponential(size=(7, window * n_kpi)) * np.arange(1, window * n_kpi + 1)
    assert rmse_per_kpi(sq, kpis) == pytest.approx(rmse_per_kpi_loops(sq, kpis), rel=1e-12)


# --- gaussian_errors ----------------------------------------------------------------------------------


def test_gaussian_errors_by_hand() -> None:
    mean, std = np.array([10.0, -4.0]), np.array([2.0, 5.0])
    x_raw = np.array([[10.0, -4.0], [10.0, -4.0]])
    recon_std = np.array([[1.0, 0.0], [0.0, -1.0]])  # -> [[12, -4], [10, -9]] in original units
    got = gaussian_errors(task_of(x_raw, mean, std, kpis=("a", "b")), x_raw, recon_std)
    assert_figures(got, {
        "nrmse": math.sqrt((1.0 + 0.0 + 0.0 + 1.0) / 4),  # errors 2 and 5 over stds 2 and 5
        "rmse_per_kpi": {"a": math.sqrt(4.0 / 2), "b": math.sqrt(25.0 / 2)},
        "rmse_mean_over_features": (math.sqrt(4.0 / 2) + math.sqrt(25.0 / 2)) / 2,
    }, rel=1e-6)


def gaussian_errors_loops(x_raw: np.ndarray, recon_std: np.ndarray, mean: np.ndarray, std: np.ndarray,
                          kpis: tuple[str, ...]) -> dict[str, object]:
    N, D = x_raw.shape
    sq = np.array([[(float(recon_std[n, j]) * float(std[j]) + float(mean[j]) - float(x_raw[n, j])) ** 2
                    for j in range(D)] for n in range(N)])
    per_feature = [math.sqrt(sum(sq[n, j] for n in range(N)) / N) for j in range(D)]
    scaled = sum(sq[n, j] / float(std[j]) ** 2 for n in range(N) for j in range(D)) / (N * D)
    return {"nrmse": math.sqrt(scaled), "rmse_per_kpi": rmse_per_kpi_loops(sq, kpis),
            "rmse_mean_over_features": sum(per_feature) / D}


def test_gaussian_errors_against_loops() -> None:
    rng = np.random.default_rng(0)
    window, kpis = 3, ("rsrp", "dl", "speed")
    D = window * len(kpis)
    mean = rng.normal(size=D) * 100
    std = rng.uniform(0.1, 50.0, size=D)
    x_raw = (mean + rng.normal(size=(9, D)) * std).astype(np.float32)
    recon_std = rng.normal(size=(9, D)).astype(np.float32)
    task = task_of(x_raw, mean, std, kpis=kpis)
    want = gaussian_errors_loops(x_raw, recon_std, task.mean, task.std, kpis)
    assert_figures(gaussian_errors(task, x_raw, recon_std), want, rel=1e-5)


def test_gaussian_errors_without_kpis_have_no_per_kpi_figure() -> None:
    x = np.array([[1.0, 2.0, 3.0]])
    got = gaussian_errors(task_of(x, np.zeros(3), np.ones(3)), x, x)
    assert set(got) == {"nrmse", "rmse_mean_over_features"}
    assert got["nrmse"] == 0.0 and got["rmse_mean_over_features"] == 0.0


# --- f1_scores ----------------------------------------------------------------------------------------


def test_perfect_predictions_score_exactly_one_and_no_hits_exactly_zero() -> None:
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])  # one positive of label 0, none of label 2
    assert f1_scores(y, y) == {"micro_f1": 1.0, "macro_f1": 2 / 3, "macro_f1_harmonic": 2 / 3}
    assert f1_scores(y, 1 - y) == {"micro_f1": 0.0, "macro_f1": 0.0, "macro_f1_harmonic": 0.0}
    assert f1_scores(y, np.zeros_like(y)) == {"micro_f1": 0.0, "macro_f1": 0.0, "macro_f1_harmonic": 0.0}


# --- choose_threshold ---------------------------------------------------------------------------------


class FixedProbabilities:
    """A stand-in for SDLGMDis: given probabilities, handed out only for the standardized validation rows."""

    def __init__(self, expected_x: np.ndarray, prob: np.ndarray) -> None:
        self.expected_x, self.prob = expected_x, prob

    def label_probability(self, x: torch.Tensor) -> torch.Tensor:
        np.testing.assert_allclose(x.numpy(), self.expected_x, rtol=1e-6)
        return torch.from_numpy(self.prob.astype(np.float32))


class LinearProbabilities:
    """sigmoid(x W): probabilities that depend on which rows, standardized how, the caller passes."""

    def __init__(self, W: np.ndarray) -> None:
        self.W = torch.from_numpy(W.astype(np.float32))

    def label_probability(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x @ self.W)


def micro_f1_loops(y: np.ndarray, pred: np.ndarray) -> float:
    tp = fp = fn = 0
    for yr, pr in zip(y.tolist(), pred.tolist(), strict=True):
        for a, b in zip(yr, pr, strict=True):
            tp += bool(a) and bool(b)
            fp += (not a) and bool(b)
            fn += bool(a) and not b
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def choose_threshold_loops(y: np.ndarray, prob: np.ndarray, grid: list[float]) -> float:
    best, best_score = grid[0], -1.0
    for t in grid:
        score = micro_f1_loops(y, prob >= t)
        if score > best_score:  # strictly better: the first of equals stays
            best, best_score = t, score
    return best


def _choose(y: np.ndarray, prob: np.ndarray, grid: list[float]) -> float:
    mean, std = np.array([3.0, -1.0]), np.array([2.0, 0.5])
    valid = mean + np.arange(2 * len(y)).reshape(len(y), 2) * std  # standardized: 0, 1, 2, ...
    task = task_of(valid, mean, std, likelihood="labels", y_valid=y)
    return choose_threshold(FixedProbabilities(np.arange(2 * len(y)).reshape(len(y), 2), prob), task, grid)  # type: ignore[arg-type]


def test_the_threshold_with_the_best_micro_f1_is_chosen() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1]])
    prob = np.array([[0.875, 0.125], [0.375, 0.625], [0.5, 0.25]])
    # micro F1: t = 0.25 -> 8/9 (one false positive), 0.5 -> 6/7, 0.75 -> 2/5
    assert _choose(y, prob, [0.5, 0.25, 0.75]) == 0.25
    assert _choose(y, prob, [0.75, 0.5]) == 0.5


def test_a_probability_equal_to_the_threshold_counts_as_predicted() -> None:
    y = np.array([[1], [0], [1]])
    prob = np.array([[0.5], [0.375], [0.5]])  # exact in float32
    # t = 0.25: all predicted, F1 = 4/5; t = 0.5: exactly the positives (p >= t), F1 = 1
    assert _choose(y, prob, [0.25, 0.5]) == 0.5


@pytest.mark.parametrize(("grid", "first"), [([0.5, 0.75, 0.25], 0.5), ([0.75, 0.5, 0.25], 0.75),
                                             ([0.25, 0.75, 0.5], 0.75)])
def test_the_first_of_equal_scores_is_chosen(grid: list[float], first: float) -> None:
    y = np.array([[1], [0], [1], [0]])
    prob = np.array([[0.875], [0.25], [0.875], [0.375]])  # t = 0.5 and t = 0.75 both give F1 = 1
    assert _choose(y, prob, grid) == first


@pytest.mark.parametrize("seed", range(5))
def test_choose_threshold_against_loops_on_the_standardized_validation_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    D, K, N = 4, 3, 40
    mean, std = rng.normal(size=D) * 5, rng.uniform(0.5, 3.0, size=D)
    valid = (mean + rng.normal(size=(N, D)) * std).astype(np.float32)
    W = rng.normal(size=(D, K)) * 2
    y = (rng.random((N, K)) < 0.4).astype(np.int8)
    task = task_of(valid, mean, std, likelihood="labels", y_valid=y)
    model = LinearProbabilities(W)
    x = torch.from_numpy(((valid - task.mean) / task.std).astype(np.float32))
    prob = model.label_probability(x).numpy()
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    assert choose_threshold(model, task, grid) == choose_threshold_loops(y, prob, grid)  # type: ignore[arg-type]


# --- bundle_evaluation --------------------------------------------------------------------------------


def test_bundle_evaluation_against_onnxruntime_and_the_code_formats_by_hand() -> None:
    m = load_manifest(BUNDLE)
    assert m.standardization is not None
    sessions = {r: ort.InferenceSession(str(BUNDLE / g.file), providers=["CPUExecutionProvider"])
                for r, g in m.graphs.present().items()}
    mean, std = np.asarray(m.standardization.mean), np.asarray(m.standardization.std)
    x64 = mean + np.random.default_rng(0).normal(size=(50, m.D)) * std  # float64 rows, as a caller may pass
    x = x64.astype(np.float32)  # what the graphs take
    pi = sessions["encoder"].run(None, {"x": x})[0]
    if m.gate == "shared":
        L_hat, counts = codes.deterministic_code(pi, sessions["sparsity"].run(None, {"x": x})[0], m.L0)
    else:  # each slot's most likely symbol, by hand
        counts = np.zeros((50, m.K), dtype=np.int64)
        block = m.K // m.L0
        for i, s in itertools.product(range(50), range(m.L0)):
            j = int(np.argmax(pi[i, s]))
            if j < block:
                counts[i, s * block + j] = 1
        L_hat = counts.sum(1)
    recon = sessions["decoder"].run(None, {"z": counts.astype(np.float32)})[0].astype(np.float64)
    sq = (recon - x) ** 2
    nnz = (counts > 0).sum(1)
    width = 1 if m.K <= 256 else 2
    v1 = 2 + (width + 1) * nnz  # version, count, then an index and a count byte per non-zero
    enum = math.ceil(math.ceil(math.log2(m.code_space.size)) / 8)
    kpis = ("RSRP", "RSRQ", "SNR", "CQI", "RSSI", "DL_bitrate", "UL_bitrate", "Speed")
    got = bundle_evaluation(BUNDLE, x64, kpis)
    sizes = got["bytes_per_format"]
    assert sizes["v1"] == v1.mean() and sizes["enum"] == enum
    assert set(sizes) == set(m.formats) and round(sizes.get("range", 0) * 50) % 4 == 0  # whole 32-bit words
    assert_figures({k: v for k, v in got.items() if k not in ("bytes_per_format", "entropy_bits")}, {
        "rows": 50, "mean_L_hat": L_hat.mean(), "mean_nnz": nnz.mean(), "mean_code_bytes": v1.mean(),
        "code_bits": math.log2(m.code_space.size), "raw_float32_bytes": 4 * m.D,
        "compression_ratio": 4 * m.D / min(sizes.values()),
        "rmse": math.sqrt(sq.mean()), "nrmse": math.sqrt((sq / std**2).mean()),
        "rmse_per_kpi": rmse_per_kpi_loops(sq, kpis)}, rel=1e-9)  # errors summed in float64
    assert set(bundle_evaluation(BUNDLE, x[:3])) == set(got) - {"rmse_per_kpi"}


# --- evaluate on tiny models --------------------------------------------------------------------------

FIXED = Temperatures(Temperature(tau0=0.7), Temperature(tau0=0.4))
STEP = 10


def _gaussian_model_and_task(rows: np.ndarray) -> tuple[SDLGM, Task]:
    torch.manual_seed(0)
    model = SDLGM(SDLGMConfig(D=4, K=3, L0=2, lambda0=0.3, encoder=(8,), sparsity=(8,), decoder=(8,),
                              likelihood="gaussian"))
    assert model.log_scale is not None
    with torch.no_grad():  # a decoder that the code moves, sharp slots, gates on more often than the prior
        model.log_scale.copy_(torch.tensor([-0.5, 0.0, 0.3, 0.6]))
        model.decoder[-1].weight.mul_(8.0)
        model.encoder[-1].weight.mul_(4.0)
        model.sparsity[-1].bias.add_(torch.tensor([-1.0, 1.0]))
    mean, std = np.array([100.0, -3.0, 0.5, 20.0]), np.array([10.0, 0.5, 2.0, 4.0])
    return model, task_of(rows, mean, std, kpis=("a", "b"))  # two seconds of two KPIs


def exact_terms(model: SDLGM, x: torch.Tensor) -> tuple[float, float, float]:
    """log p(x), the discrete ELBO and E_q log p(x | z) of one standardized row, enumerating (w_l, z_l)."""
    cfg = model.cfg
    with torch.no_grad():
        pi = torch.softmax(model.pi_logits(x), -1)[0].double()
        lam = float(torch.softmax(model.lambda_logits(x), -1)[0, 1])
        log_px, elbo, recon = [], 0.0, 0.0
        for w in itertools.product([0, 1], repeat=cfg.L0):
            for z in itertools.product(range(cfg.K), repeat=cfg.L0):
                counts = torch.zeros(1, cfg.K)
                log_p = log_q = 0.0
                for slot in range(cfg.L0):
                    counts[0, z[slot]] += w[slot]
                    log_p += math.log(cfg.lambda0 if w[slot] else 1 - cfg.lambda0) - math.log(cfg.K)
                    log_q += math.log(lam if w[slot] else 1 - lam) + math.log(float(pi[z[slot]]))
                ll = float(log_likelihood(x, model.decoder(counts), cfg.likelihood, model.log_scale))
                log_px.append(log_p + ll)
                elbo += math.exp(log_q) * (ll + log_p - log_q)
                recon += math.exp(log_q) * ll
    return float(torch.logsumexp(torch.tensor(log_px), 0)), elbo, recon


def test_evaluate_against_enumeration_on_a_tiny_gaussian_model() -> None:
    rng = np.random.default_rng(1)
    model, probe = _gaussian_model_and_task(np.zeros((1, 4)))
    distinct = (probe.mean + rng.normal(size=(3, 4)) * probe.std).astype(np.float32)
    repeats = 3000
    x_raw = np.tile(distinct, (repeats, 1))  # row i is distinct[i % 3]
    _, task = _gaussian_model_and_task(x_raw)
    torch.manual_seed(2)
    got = evaluate(model, task, "valid", FIXED, STEP, is_samples=20_000, is_rows=3, is_seed=5)
    is_rows = evaluation_rows(len(x_raw), 3, 5) % 3  # which distinct row each IS row is

    xs = torch.from_numpy(((distinct - task.mean) / task.std).astype(np.float32))
    exact = [exact_terms(model, xs[i:i + 1]) for i in range(3)]
    with torch.no_grad():
        pi, lam = model.pi_logits(xs), model.lambda_logits(xs)
        kl = float(sum(model.kl(pi, lam)).mean())
        relaxed = model(xs.repeat(repeats, 1), 0.7, 0.4, "relaxed")["elbo"]
        hard = model(xs.repeat(repeats, 1), 0.7, 0.4, "hard")
        L_hat, counts = codes.deterministic_code(pi.numpy(), lam.numpy(), model.cfg.L0)
        out = model.decoder(torch.from_numpy(counts.astype(np.float32)))
        mode_ll = log_likelihood(xs, out, "gaussian", model.log_scale).numpy()
    se = hard["elbo"].std().item() / math.sqrt(len(x_raw))
    se_recon = hard["recon"].std().item() / math.sqrt(len(x_raw))
    se_relaxed = relaxed.std().item() / math.sqrt(len(x_raw))

    assert (got["rows"], got["is_rows"], got["is_samples"]) == (3 * repeats, 3, 20_000)
    assert got["discrete_neg_elbo"] == pytest.approx(-np.mean([e for _, e, _ in exact]), abs=5 * se)
    assert got["discrete_recon_nll"] == pytest.approx(-np.mean([r for _, _, r in exact]), abs=5 * se_recon)
    assert got["relaxed_neg_elbo"] == pytest.approx(-relaxed.mean().item(), abs=7 * se_relaxed)
    assert got["kl"] == pytest.approx(kl, rel=1e-5)
    assert got["is_nll"] == pytest.approx(-np.mean([exact[i][0] for i in is_rows]), abs=0.1)  # 1%: IS with 20000 samples
    assert got["mode_code_recon_nll"] == pytest.approx(-mode_ll.mean(), rel=1e-5)
    assert got["mean_L_hat"] == pytest.approx(L_hat.mean(), rel=1e-6)
    assert got["mean_nnz"] == pytest.approx((counts > 0).sum(1).mean(), rel=1e-6)
    errors = gaussian_errors_loops(distinct, out.numpy(), task.mean, task.std, ("a", "b"))
    assert_figures({k: got[k] for k in errors}, errors, rel=1e-5)


def test_evaluate_without_importance_samples_reports_no_is_figures() -> None:
    model, task = _gaussian_model_and_task(np.zeros((5, 4), np.float32))
    got = evaluate(model, task, "valid", FIXED, STEP, is_samples=0)
    assert not {"is_nll", "is_samples", "is_rows"} & set(got) and got["rows"] == 5


def test_an_evaluation_is_repeatable_and_leaves_the_callers_random_stream_alone() -> None:
    torch.manual_seed(4)
    model = GSVAE(GSVAEConfig(D=6, n_vars=3, n_classes=4, encoder=(8,), decoder=(8,)))
    x = (np.random.default_rng(4).random((30, 6)) > 0.5).astype(np.float32)
    task = task_of(x, np.zeros(6), np.ones(6), likelihood="bernoulli")
    torch.manual_seed(11)
    first = evaluate(model, task, "valid", FIXED, STEP, is_samples=3, is_rows=10)
    after_first = torch.rand(3)
    torch.manual_seed(11)
    again = evaluate(model, task, "valid", FIXED, STEP, is_samples=3, is_rows=10)
    assert first == again  # the samples are the seed's, not the caller's stream's
    torch.manual_seed(11)
    assert torch.equal(torch.rand(3), after_first)  # the caller's stream as if no evaluation had run
    other = evaluate(model, task, "valid", FIXED, STEP, is_samples=3, is_rows=10, is_seed=1)
    assert other["discrete_neg_elbo"] != first["discrete_neg_elbo"]  # the seed decides the samples


def test_evaluate_a_gumbel_softmax_vae_counts_one_slot_per_variable() -> None:
    torch.manual_seed(3)
    model = GSVAE(GSVAEConfig(D=6, n_vars=3, n_classes=4, encoder=(8,), decoder=(8,)))
    x = (np.random.default_rng(3).random((20, 6)) > 0.5).astype(np.float32)
    task = task_of(x, np.zeros(6), np.ones(6), likelihood="bernoulli")
    got = evaluate(model, task, "valid", FIXED, STEP, is_samples=4, is_rows=7)
    assert (got["mean_L_hat"], got["mean_nnz"], got["is_rows"], got["rows"]) == (3.0, 3.0, 7, 20)
    with torch.no_grad():
        z = model.encode(torch.from_numpy(x))[1].float()
        want = -log_likelihood(torch.from_numpy(x), model.decoder(z), "bernoulli", None).mean().item()
    assert got["mode_code_recon_nll"] == pytest.approx(want, rel=1e-5)
    assert "nrmse" not in got


def test_evaluate_dis_averages_the_label_likelihood_over_label_sets_within_L0() -> None:
    torch.manual_seed(4)
    model = SDLGMDis(DisConfig(D=3, K=4, L0=2, encoder=(8,), sparsity=(8,)))
    rng = np.random.default_rng(4)
    mean, std = np.array([1.0, -2.0, 5.0]), np.array([2.0, 0.5, 3.0])
    valid = (mean + rng.normal(size=(30, 3)) * std).astype(np.float32)
    y = (rng.random((30, 4)) < 0.4).astype(np.int8)
    y[0] = [1, 1, 1, 0]  # three labels, over L0: left out of the likelihood
    task = task_of(valid, mean, std, likelihood="labels", y_valid=y)
    x = torch.from_numpy(((valid - task.mean) / task.std).astype(np.float32))
    with torch.no_grad():
        lls = [float(model.log_likelihood(x[i:i + 1], torch.from_numpy(y[i:i + 1].astype(np.float32))))
               for i in range(30) if y[i].sum() <= 2]
    assert 0 < len(lls) < 30
    got = evaluate(model, task, "valid", FIXED, STEP)
    assert got == pytest.approx({"nll": -np.mean(lls), "rows": 30}, rel=1e-5)
    prob = model.label_probability(x).numpy()
    with_t = evaluate_labels(model, task, "valid", threshold=0.25)
    pred = prob >= 0.25
    assert with_t["threshold"] == 0.25 and with_t["nll"] == got["nll"]
    assert with_t["micro_f1"] == pytest.approx(micro_f1_loops(y, pred), rel=1e-9)
    assert {"macro_f1", "macro_f1_harmonic"} <= set(with_t)


def test_bundle_evaluation_of_a_supervised_bundle_scores_its_own_thresholds(tmp_path: Path) -> None:
    from training.export import export_bundle

    torch.manual_seed(6)
    model = SDLGMDis(DisConfig(D=5, K=3, L0=2, encoder=(8,), sparsity=(8,)))
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = (rng.random((40, 3)) < 0.4).astype(np.int8)
    thresholds = [0.2, 0.35, 0.5]
    export_bundle(model, tmp_path, "dis", "1", list("abcde"), x, eval_y=y, labels=["p", "q", "r"],
                  thresholds=thresholds)
    got = bundle_evaluation(tmp_path, x, y=y)
    sess = {r: ort.InferenceSession(str(tmp_path / g.file), providers=["CPUExecutionProvider"])
            for r, g in load_manifest(tmp_path).graphs.present().items()}
    prob = codes.label_probability(sess["encoder"].run(None, {"x": x})[0], sess["sparsity"].run(None, {"x": x})[0], 2)
    want = f1_scores(y, prob >= np.asarray(thresholds))
    assert {k: got[k] for k in want} == pytest.approx(want, rel=1e-12)
    assert want != f1_scores(y, prob >= 0.35)  # per-label thresholds matter on these rows
    assert "micro_f1" not in bundle_evaluation(tmp_path, x)  # no label sets, no F1
