"""The Table II protocol on Mulan multi-label data: splits, standardization, hyperparameters by 5-fold
cross-validation on the training part, reruns, and the methods compared in one run.

Protocol (after Martins & Astudillo 2016, see ../shared/REFERENCES.md):
* rows without labels are dropped; features are standardized with statistics of the training part only;
* a data set with a Mulan train/test pair uses it, and its 5 reruns differ by the seed (initialization and
  minibatch order); a data set with one file (CAL500) uses a shuffled outer 5-fold split (seed 0), and
  rerun r tests on fold r, training on the other four;
* hyperparameters (the training grid of each method crossed with its threshold grid) are chosen by 5-fold
  cross-validation on the training part only, maximizing the mean of micro F1 and macro F1 (per-label
  mean; OBJECTIVES has the criteria that pick one model per column instead); for a fixed train/test pair
  the CV runs once (seed 0) and serves the 5 reruns;
* options of the protocol (`methods`), each recorded in the rows' "protocol": grid "wide" (stronger
  weight decay; SDLGM-Con's weight decay and slot temperature tau), ensemble R (each SDLGM fit averages R
  seeds' P(k in code), in the CV as well) and rules "per-label" (the CV picks one threshold per label for
  the methods that threshold p_k, by coordinate ascent on the out-of-fold scores: `per_label_rule`);
* every method reports micro F1 and both macro F1s: the per-label mean (scikit-learn's average="macro")
  and the harmonic mean of macro precision and macro recall (the sparsemax paper's).

Methods: SDLGM-Dis (model.dis: exact likelihood, no relaxation, so no temperature), SDLGM-Gen (model.gen),
SDLGM-Con (model.con: labels plus 16 unobserved slots, L0z = 4, straight-through at tau = 1, or tau in
{1, 3} with grid "wide"),
one-vs-rest logistic regression (scikit-learn), and linear models with the softmax and sparsemax losses on
the targets y / |y|. Prediction rules: logistic and SDLGM p_k >= t with t in {0.05, ..., 0.5}; softmax
p_k > t / K; sparsemax the support of sparsemax(t s).

Any Mulan set runs the protocol (`run_dataset` takes the data, not a name); given an `Exporter`, each SDLGM
variant's rerun-0 model goes to it, and `export_supervised` makes it a bundle that /predict serves with
the CV-chosen threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import KFold

from bundle.manifest import Manifest
from model import con, dis, gen
from model.con import SDLGMCon
from model.dis import SDLGMDis
from model.family import Batch, DataShape, Family
from model.gen import SDLGMGen
from training.bundle_eval import f1_scores
from training.datasets import MultiLabelData, drop_unlabelled, safe_std
from training.export import export_bundle
from training.loop import Loop, LoopConfig, run, steps_per_epoch

THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 11)]  # 0.05 .. 0.5


# ------------------------------------------------------------------------------------------- sparsemax


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of each row of z (..., K) onto the probability simplex (Martins &
    Astudillo 2016, Algorithm 1): sort, find the support size, shift by the threshold tau and clip."""
    zs, _ = torch.sort(z, dim=-1, descending=True)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cum = zs.cumsum(-1)
    support = (1 + k * zs > cum).sum(-1, keepdim=True)  # (..., 1): the support size k(z)
    tau = (cum.gather(-1, support - 1) - 1) / support.to(z.dtype)
    return torch.clamp(z - tau, min=0)


def sparsemax_loss(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The sparsemax loss (Martins & Astudillo 2016, Eq. 18) per row, for scores z and targets q on the
    simplex: -q.z + 1/2 sum_{j in S(z)} (z_j^2 - tau^2) + 1/2 |q|^2. Its gradient is sparsemax(z) - q."""
    p = sparsemax(z)
    support = p > 0
    # z_j - p_j = tau on the support (never empty), the same for every j there.
    tau = torch.where(support, z - p, torch.zeros_like(z)).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
    quad = torch.where(support, z**2 - tau**2, torch.zeros_like(z)).sum(-1)
    return -(q * z).sum(-1) + 0.5 * quad + 0.5 * (q**2).sum(-1)


# --------------------------------------------------------------------------------------------- methods


Supervised = SDLGMDis | SDLGMGen | SDLGMCon
Rule = float | list[float]  # one rule value for every label, or (per_label) one threshold per label
Trainer = Callable[[np.ndarray, np.ndarray, dict[str, Any], int], Supervised]


@dataclass
class Method:
    """A method: a training grid, a rule grid, fit(X, Y, hp, seed) -> scores function, and predict. An
    SDLGM variant also has `train`, the fit's model itself, which a bundle can be exported from. With
    per_label (a per-label threshold rule only) the CV picks one threshold of `rules` per label. `protocol`
    names the options it was built with (grid, ensemble, rules), recorded in its rows."""

    name: str
    grid: Callable[[np.ndarray], list[dict[str, Any]]]  # hyperparameter sets, given the training labels
    rules: list[float]
    fit: Callable[[np.ndarray, np.ndarray, dict[str, Any], int], Callable[[np.ndarray], np.ndarray]]
    predict: Callable[[np.ndarray, Rule], np.ndarray]  # (scores (N, K), rule value) -> bool (N, K)
    deterministic: bool = False  # reruns give the same numbers (no seed in the fit)
    train: Trainer | None = None
    per_label: bool = False
    protocol: dict[str, Any] = field(default_factory=dict)


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _l0_grid(Y: np.ndarray) -> list[int]:
    m = int(Y.sum(1).max())
    return sorted({min(m, 255), min(2 * m, 255)})


BATCH = 32  # rows per step of the SDLGM variants


def _hidden(hp: dict[str, Any]) -> tuple[int, ...]:
    """The encoder's (and decoder's) hidden layers: one of hp["hidden"] units, none (linear) for 0."""
    return (hp["hidden"],) if hp["hidden"] else ()


Variant = TypeVar("Variant", SDLGMDis, SDLGMGen, SDLGMCon)


def _train(family: Family[Variant], X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int,
           **options: Any) -> Variant:
    """The family's model with these options (built after seeding), trained by the one loop: AdamW on its
    loss over hp["epochs"] seeded permutations of the rows, batches of 32 (the last one short)."""
    torch.manual_seed(seed)
    model = family.build(DataShape(D=X.shape[1], K=Y.shape[1]), **options)
    x, y = _torch(X), _torch(Y)
    cfg = LoopConfig(steps=hp["epochs"] * steps_per_epoch(len(x), BATCH), batch_size=BATCH, optimizer="adamw",
                     weight_decay=hp["weight_decay"], drop_last=False, seed=seed)
    run(Loop(cfg, model.parameters(), len(x), lambda i, _: model.loss(Batch(x[i], y[i])), [model]))
    return model.eval()


def train_dis(X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int) -> SDLGMDis:
    """SDLGM-Dis on standardized X (N, D) and labels Y (N, K): AdamW on the exact likelihood."""
    return _train(dis.FAMILY, X, Y, hp, seed, L0=hp["L0"], encoder=_hidden(hp), sparsity=(64,))


def train_gen(X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int) -> SDLGMGen:
    """SDLGM-Gen on standardized X and labels Y: AdamW on -log p(x, y) - alpha log q(y | x)."""
    return _train(gen.FAMILY, X, Y, hp, seed, L0=hp["L0"], encoder=_hidden(hp), sparsity=(64,),
                  decoder=_hidden(hp), alpha=hp["alpha"])


def train_con(X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int) -> SDLGMCon:
    """SDLGM-Con on standardized X and labels Y: AdamW on the loss of model.con (one z sample per row)."""
    return _train(con.FAMILY, X, Y, hp, seed, L0=hp["L0"], Kz=hp["Kz"], L0z=hp["L0z"], encoder=_hidden(hp),
                  decoder=_hidden(hp), alpha=hp["alpha"], tau=hp.get("tau", 1.0))


def label_scores(model: Supervised, X: np.ndarray) -> np.ndarray:
    """P(k in code) for each row of standardized X (N, D) and label k: (N, K)."""
    return model.label_probability(_torch(X)).numpy()


def ensemble_seeds(seed: int, members: int) -> list[int]:
    """The seeds of an ensemble's members for rerun `seed`: the rerun's own seed for one member, else
    seed * members + i, so that no two reruns share a member."""
    return [seed] if members == 1 else [seed * members + i for i in range(members)]


def _fit(train: Trainer) -> Callable[[np.ndarray, np.ndarray, dict[str, Any], int], Callable[[np.ndarray], np.ndarray]]:
    """A Method's fit: train hp["ensemble"] models (default 1, differing by seed only), then score test
    rows by P(k in code), averaged over the members."""
    def fit(X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int) -> Callable[[np.ndarray], np.ndarray]:
        models = [train(X, Y, hp, s) for s in ensemble_seeds(seed, hp.get("ensemble", 1))]
        return lambda Xt: np.mean([label_scores(m, Xt) for m in models], axis=0)
    return fit


def export_supervised(model: Supervised, X_train_raw: np.ndarray, out_dir: Path, name: str,
                      version: str, data: MultiLabelData, threshold: Rule, variant: str,
                      test: MultiLabelData, hp: dict[str, Any] | None = None) -> Manifest:
    """A supervised bundle (kind "sdlgm-dis": the code is the label set) that /predict serves, through the
    one export path: the model's deployable half (SDLGM-Gen's encoder q(y | x), SDLGM-Con's q(y | x) on
    the shared trunk) with the training part's standardization baked in, evaluated on the raw test rows.
    The variant, the protocol and the hyperparameters go to manifest.training."""
    mean, std = X_train_raw.mean(0), safe_std(X_train_raw.std(0))
    model.set_standardization(torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32)))
    return export_bundle(model, out_dir, name, version, data.feature_names, test.X, eval_y=test.Y,
                         training={"variant": variant, "protocol": "training/multilabel.py",
                                   "hyperparameters": hp or {}},
                         labels=data.label_names,
                         thresholds=list(threshold) if isinstance(threshold, list) else [threshold] * len(data.label_names),
                         probe=X_train_raw[:64].astype(np.float32))


def fit_logistic(X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    models: list[LogisticRegression | float] = []
    for k in range(Y.shape[1]):
        if Y[:, k].min() == Y[:, k].max():  # a label constant in this training part: predict its value
            models.append(float(Y[0, k]))
        else:
            models.append(LogisticRegression(C=hp["C"], max_iter=2000).fit(X, Y[:, k]))

    def scores(Xt: np.ndarray) -> np.ndarray:
        cols = [np.full(len(Xt), m) if isinstance(m, float) else m.predict_proba(Xt)[:, 1] for m in models]
        return np.stack(cols, axis=1)

    return scores


def _fit_linear(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[
        [np.ndarray, np.ndarray, dict[str, Any], int], Callable[[np.ndarray], np.ndarray]]:
    """A linear model s = W x + b on targets y / |y|, L2-regularized, fitted by L-BFGS (convex losses)."""

    def fit(X: np.ndarray, Y: np.ndarray, hp: dict[str, Any], seed: int) -> Callable[[np.ndarray], np.ndarray]:
        x, y = _torch(X), _torch(Y)
        q = y / y.sum(1, keepdim=True).clamp(min=1)
        W = torch.zeros(X.shape[1], Y.shape[1], requires_grad=True)
        b = torch.zeros(Y.shape[1], requires_grad=True)
        opt = torch.optim.LBFGS([W, b], max_iter=hp["iters"], line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            value = loss(x @ W + b, q).mean() + 0.5 * hp["l2"] * (W**2).sum()
            value.backward()
            return value

        opt.step(closure)
        return lambda Xt: (_torch(Xt) @ W + b).detach().numpy()

    return fit


def _softmax_loss(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return -(q * F.log_softmax(z, -1)).sum(-1)


def predict_threshold(scores: np.ndarray, t: Rule) -> np.ndarray:
    """p_k >= t, with t one threshold for every label or one per label (K,)."""
    return scores >= np.asarray(t, dtype=scores.dtype)


def predict_softmax(scores: np.ndarray, t: Rule) -> np.ndarray:
    p = torch.softmax(torch.from_numpy(scores), -1).numpy()
    return p > (np.asarray(t, dtype=np.float64) / scores.shape[1]).astype(p.dtype)


def predict_sparsemax(scores: np.ndarray, t: Rule) -> np.ndarray:
    return sparsemax(torch.from_numpy(scores) * torch.as_tensor(np.asarray(t, dtype=scores.dtype))).numpy() > 0


GRIDS = ("default", "wide")
RULES = ("global", "per-label")


def methods(quick: bool = False, grid: str = "default", ensemble: int = 1, rules: str = "global") -> list[Method]:
    """The compared methods with their grids (small grids: the run must fit in minutes on 2 cores).

    grid "wide" widens the SDLGM grids with what inner CV on the Emotions training part preferred: stronger
    weight decay (3, 10) for the encoder, and for SDLGM-Con the weight decay and the slot temperature tau in
    {1, 3}. ensemble R > 1 makes every SDLGM fit the average of R models' P(k in code) (seeds
    ensemble_seeds), inside the CV as well. rules "per-label" lets the CV pick one threshold per label for
    the methods thresholding p_k (the SDLGM variants and logistic regression)."""
    if grid not in GRIDS or rules not in RULES or ensemble < 1:
        raise ValueError(f"grid must be one of {GRIDS}, rules one of {RULES}, ensemble >= 1; got {grid!r}, "
                         f"{rules!r}, {ensemble}")
    wide = grid == "wide" and not quick
    ep_dis, ep_gen = (2, 2) if quick else (60, 60)

    # hidden 0 is a linear encoder (as the baselines are); CV picks it where the data are few (CAL500)
    hiddens, decays = ((128,), (0.01,)) if quick else ((0, 128), (0.3, 1.0, 3.0, 10.0) if wide else (0.01, 0.3, 1.0))
    members = {"ensemble": ensemble} if ensemble > 1 else {}

    def dis_grid(Y: np.ndarray) -> list[dict[str, Any]]:
        return [{"L0": L0, "hidden": h, "epochs": ep_dis, "weight_decay": wd, **members}
                for L0 in _l0_grid(Y)[: 1 if quick else 2] for h in hiddens for wd in decays]

    def gen_grid(Y: np.ndarray) -> list[dict[str, Any]]:
        return [{"L0": L0, "hidden": h, "epochs": ep_gen, "weight_decay": wd, "alpha": 1.0, **members}
                for L0 in _l0_grid(Y)[: 1 if quick else 2] for h in hiddens for wd in decays]

    def con_grid(Y: np.ndarray) -> list[dict[str, Any]]:
        con_decays, taus = ((0.01, 3.0), (1.0, 3.0)) if wide else ((0.01,), (1.0,))
        return [{"L0": L0, "hidden": 128, "epochs": ep_gen, "weight_decay": wd, "alpha": 1.0, "Kz": 16, "L0z": 4,
                 "tau": tau, **members} for L0 in _l0_grid(Y)[:1] for wd in con_decays for tau in taus]

    lin_l2 = (1e-3,) if quick else (1e-3, 1e-2, 1e-1)
    iters = 20 if quick else 300
    per_label = rules == "per-label"
    sdlgm = {"grid": grid, "ensemble": ensemble, "rules": rules}
    linear = {"grid": "default", "rules": "global"}
    return [
        Method("SDLGM-Dis", dis_grid, THRESHOLDS, _fit(train_dis), predict_threshold, train=train_dis,
               per_label=per_label, protocol=sdlgm),
        Method("SDLGM-Gen", gen_grid, THRESHOLDS, _fit(train_gen), predict_threshold, train=train_gen,
               per_label=per_label, protocol=sdlgm),
        Method("SDLGM-Con", con_grid, THRESHOLDS, _fit(train_con), predict_threshold, train=train_con,
               per_label=per_label, protocol=sdlgm),
        Method("logistic (one-vs-rest)", lambda Y: [{"C": c} for c in ((1.0,) if quick else (0.01, 0.1, 1.0))],
               THRESHOLDS, fit_logistic, predict_threshold, deterministic=True, per_label=per_label,
               protocol={"grid": "default", "rules": rules}),
        Method("softmax", lambda Y: [{"l2": v, "iters": iters} for v in lin_l2], [0.5 * i for i in range(1, 11)],
               _fit_linear(_softmax_loss), predict_softmax, deterministic=True, protocol=linear),
        Method("sparsemax", lambda Y: [{"l2": v, "iters": iters} for v in lin_l2], [1.0, 2.0, 3.0, 4.0, 5.0],
               _fit_linear(sparsemax_loss), predict_sparsemax, deterministic=True, protocol=linear),
    ]


# -------------------------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class Fold:
    X_train: np.ndarray  # standardized with the training part's statistics
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    seed: int
    X_train_raw: np.ndarray  # the same rows as read (what a bundle exported from this fold takes)
    X_test_raw: np.ndarray


def standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = X_train.mean(0), safe_std(X_train.std(0))
    return (X_train - mean) / std, (X_test - mean) / std


def outer_folds(train: MultiLabelData, test: MultiLabelData | None, reruns: int) -> list[Fold]:
    """The reruns: the given split with seeds 0..reruns-1, or an outer k-fold (k = reruns, at least 2)."""
    tr = drop_unlabelled(train)
    if test is not None:
        te = drop_unlabelled(test)
        Xa, Xb = standardize(tr.X, te.X)
        return [Fold(Xa, tr.Y, Xb, te.Y, seed, tr.X, te.X) for seed in range(reruns)]
    folds = []
    for seed, (a, b) in enumerate(KFold(max(reruns, 2), shuffle=True, random_state=0).split(tr.X)):
        if seed == reruns:
            break
        Xa, Xb = standardize(tr.X[a], tr.X[b])
        folds.append(Fold(Xa, tr.Y[a], Xb, tr.Y[b], seed, tr.X[a], tr.X[b]))
    return folds


# The CV criteria. "mean" (the default) picks one model for every column; "micro" and "harmonic" pick one
# per column, each maximizing the F1 that column reports.
OBJECTIVES: dict[str, Callable[[dict[str, float]], float]] = {
    "mean": lambda s: 0.5 * (s["micro_f1"] + s["macro_f1"]),
    "micro": lambda s: s["micro_f1"],
    "harmonic": lambda s: s["macro_f1_harmonic"],
}


def per_label_rule(Y: np.ndarray, scores: np.ndarray, folds: Sequence[np.ndarray], rules: Sequence[float],
                   score: Callable[[dict[str, float]], float], start: float,
                   sweeps: int = 2) -> tuple[list[float], float]:
    """One threshold of `rules` per label and its mean score over the folds, by coordinate ascent from `start` for every label: each sweep
    sets each label's threshold in turn to the value maximizing the mean of `score` over the folds (row
    indices into Y and the out-of-fold scores (N, K)); ties keep the current value. `start` itself comes
    from the same folds, so the result is never worse there than one threshold for every label."""
    t = np.full(Y.shape[1], start)

    def value(t: np.ndarray) -> float:
        return float(np.mean([score(f1_scores(Y[b], scores[b] >= t)) for b in folds]))

    best = value(t)
    for _ in range(sweeps):
        for k in range(len(t)):
            for r in rules:
                trial = t.copy()
                trial[k] = r
                v = value(trial)
                if v > best:
                    best, t = v, trial
    return [float(v) for v in t], best


def select(method: Method, X: np.ndarray, Y: np.ndarray, folds: int = 5, seed: int = 0,
           objectives: Sequence[str] = ("mean",)) -> dict[str, tuple[dict[str, Any], Rule]]:
    """Per CV criterion, the (training hyperparameters, rule value) with the best mean over the folds of
    (X, Y); every criterion reads the same fits. With method.per_label, each hyperparameter set's best
    rule value becomes a start for one threshold per label (per_label_rule on the out-of-fold scores), and
    the set whose per-label thresholds score best is picked."""
    grid = method.grid(Y)
    totals = {o: np.zeros((len(grid), len(method.rules))) for o in objectives}
    splits = [b for _, b in KFold(folds, shuffle=True, random_state=seed).split(X)]
    oof = [np.zeros(Y.shape) for _ in grid]  # out-of-fold scores of each hyperparameter set
    for b in splits:
        a = np.setdiff1d(np.arange(len(X)), b)
        Xa, Xb = standardize(X[a], X[b])
        for i, hp in enumerate(grid):
            s = method.fit(Xa, Y[a], hp, seed)(Xb)
            oof[i][b] = s
            for j, r in enumerate(method.rules):
                f1 = f1_scores(Y[b], method.predict(s, r))
                for o in objectives:
                    totals[o][i, j] += OBJECTIVES[o](f1)
    picks: dict[str, tuple[dict[str, Any], Rule]] = {}
    for o, t in totals.items():
        if method.per_label:
            fitted = [per_label_rule(Y, oof[i], splits, method.rules, OBJECTIVES[o], method.rules[int(np.argmax(t[i]))])
                      for i in range(len(grid))]
            i = int(np.argmax([v for _, v in fitted]))
            picks[o] = (grid[i], fitted[i][0])
            continue
        best, rule = np.unravel_index(int(np.argmax(t)), t.shape)
        picks[o] = (grid[int(best)], method.rules[int(rule)])
    return picks


@dataclass
class Row:
    dataset: str
    method: str
    split: str  # how the reruns split the data
    objective: str  # the CV criterion (OBJECTIVES)
    protocol: dict[str, Any] = field(default_factory=dict)  # the method's options (grid, ensemble, rules)
    runs: list[dict[str, float]] = field(default_factory=list)
    hyperparameters: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "method": self.method, "split": self.split,
                               "objective": self.objective, "protocol": self.protocol}
        for key, name in (("micro_f1", "micro_f1"), ("macro_f1", "macro_f1"),
                          ("macro_f1_harmonic", "macro_f1_harmonic")):
            vals = np.array([r[key] for r in self.runs])
            out[f"{name}_mean"] = float(vals.mean())
            out[f"{name}_std"] = float(vals.std())
        out["runs"] = len(self.runs)
        out["per_run"] = [{k: round(v, 6) for k, v in r.items()} for r in self.runs]  # rerun r's test figures
        out["hyperparameters"] = self.hyperparameters
        out["seconds"] = round(self.seconds, 1)
        return out


Exporter = Callable[[Method, Supervised, Fold, dict[str, Any], Rule], None]


def run_dataset(name: str, train: MultiLabelData, test: MultiLabelData | None, reruns: int = 5,
                cv_folds: int = 5, chosen: Sequence[Method] | None = None,
                log: Callable[[str], None] | None = None, export: Exporter | None = None,
                objectives: Sequence[str] = ("mean",)) -> list[dict[str, Any]]:
    """Every method on one data set under the protocol; one summary per method and CV criterion. With
    `export`, each SDLGM variant's rerun-0 model under the first criterion (the one scored for rerun 0) is
    handed to it with its fold, hyperparameters and rule (the threshold, or one per label); an ensemble
    (hp["ensemble"] > 1) is not one model and is refused."""
    folds = outer_folds(train, test, reruns)
    split = "train/test files" if test is not None else f"outer {max(reruns, 2)}-fold"
    rows = []
    for method in chosen if chosen is not None else methods():
        t0 = time.perf_counter()
        of = {o: Row(name, method.name, split, o, dict(method.protocol)) for o in objectives}
        picked: dict[str, tuple[dict[str, Any], Rule]] | None = None
        for fold in folds:
            if picked is None or test is None:  # a fixed training part is tuned once; each outer fold anew
                # Inner folds refit the standardization on their own training part.
                picked = select(method, fold.X_train, fold.Y_train, cv_folds, objectives=objectives)
            scored: dict[str, np.ndarray] = {}  # test scores of this fold per hyperparameter set
            for o, row in of.items():
                hp, rule = picked[o]
                key = repr(sorted(hp.items()))
                if method.deterministic and row.runs and test is not None:
                    row.runs.append(row.runs[-1])  # the same fit again: no seed in this method
                else:
                    if export is not None and method.train is not None and o == objectives[0] and not row.runs:
                        if hp.get("ensemble", 1) > 1:
                            raise ValueError(f"{method.name}: an ensemble of {hp['ensemble']} models is not one "
                                             "bundle; export with ensemble 1")
                        model = method.train(fold.X_train, fold.Y_train, hp, fold.seed)
                        scored[key] = label_scores(model, fold.X_test)
                        export(method, model, fold, hp, rule)
                    elif key not in scored:
                        scored[key] = method.fit(fold.X_train, fold.Y_train, hp, fold.seed)(fold.X_test)
                    row.runs.append(f1_scores(fold.Y_test, method.predict(scored[key], rule)))
                row.hyperparameters.append({**hp, "rule": rule})
        for row in of.values():
            row.seconds = time.perf_counter() - t0  # the method's run, all criteria together
            rows.append(row.summary())
            if log is not None:
                s = rows[-1]
                log(f"{name:10s} {method.name:24s} [{row.objective}] micro {s['micro_f1_mean']:.4f}±{s['micro_f1_std']:.4f} "
                    f"macro {s['macro_f1_mean']:.4f}±{s['macro_f1_std']:.4f} "
                    f"macro(harm) {s['macro_f1_harmonic_mean']:.4f} ({s['seconds']:.0f} s)")
    return rows
