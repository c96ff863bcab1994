"""Data loading for training and evaluation: finding the data directory, verifying checksums, and
turning the raw files into numpy arrays.

This module owns every read of the shared data sets (see ``../shared/data/README.md``):

* binarized MNIST (``.mat``) and the original MNIST test set (gzip IDX);
* the 5G KPI traces (one zip of CSV files): per-trace arrays, gap filling, fixed-length windows and a
  split by trace file with train-only normalisation statistics;
* Mulan multi-label data sets (ARFF + XML), with a reader that works for any Mulan set.

It imports numpy and scipy only (no torch) and raises ``DataError`` with the file and the fix.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

import numpy as np
import scipy.io

MIN_STD = 1e-6  # a feature whose training std is below this is constant: it is divided by 1 instead


def safe_std(std: np.ndarray) -> np.ndarray:
    """The std that standardization divides by: 1.0 where a feature is constant on the training part."""
    return np.where(std < MIN_STD, 1.0, std)


class DataError(RuntimeError):
    """A data file is missing, corrupted or cannot be parsed; the message says which and what to do."""


CHECKSUMS: dict[str, str] = {
    "kpi5g/5G-production-dataset.zip": "abc729d696b5e0ba34a9c6ed35a851f2868d2b5071be5efb8a49691c23bb1a9b",
    "mnist/binarized_mnist_test.mat": "5bc30222e1e7896cbccd1e1db6b28540cc1230f4d2d5473841a5f6cc54be8d38",
    "mnist/binarized_mnist_train.mat": "79a0312c7389d855cfc97e3812de3998417c5829d8a51543b56a90a91252ae7e",
    "mnist/binarized_mnist_valid.mat": "7436afc856959075c7787025bb8a4ba2b520b9230ee39667c66aa7dd2819dd68",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "mulan/birds-test.arff": "51ba6326d65ccdd7c755b6461280eb6d2769c7f59d8e12fd4250f91e6ca28326",
    "mulan/birds-train.arff": "8f215db6ee163149901e753977f631ba8bea0e0e8e1abc42b234414822f8ae36",
    "mulan/birds.xml": "0f4ea547b2b3d538c8402662daf689e0d4520cc8b4f5ba113c2e7c01700f010f",
    "mulan/cal500.arff": "cfe6097ba5fd6e8584e54911ab9783dcab34e898446b7c9370c71d477eae56d3",
    "mulan/cal500.xml": "877e128531268d7661faa3e44f7bb43cbcda829c0895e49879168775b192728c",
    "mulan/emotions-test.arff": "f13d4b746b7b5c8eb484bd751d6ac463d4560dff998a93516a5c1fe35daf6c8f",
    "mulan/emotions-train.arff": "bbe704106c79bb8fb99c1d1d2e9bde081d6a2daeb01f100862f11fd91a3c1f98",
    "mulan/emotions.xml": "dbce8e6ccbbb2fcbfd9e9edbb230d7ed12692c6e13f59fdbc0161fa9b6cf2dc0",
}

_FIX = "set SDLGM_DATA_DIR or --data-dir to the folder described in ../shared/data/README.md"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit``, else ``$SDLGM_DATA_DIR``, else ``<repo>/../shared/data``."""
    env = os.environ.get("SDLGM_DATA_DIR") or None
    if explicit is not None:
        path, source = Path(explicit), "the data-dir argument"
    elif env is not None:
        path, source = Path(env), "SDLGM_DATA_DIR"
    else:
        path, source = Path(__file__).resolve().parents[1].parent / "shared" / "data", "the default"
    if not path.is_dir():
        raise DataError(f"data directory {path} (from {source}) does not exist; {_FIX}")
    return path


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256, so files hash once


def verified(relpath: str, root: Path) -> Path:
    """``root / relpath`` after checking that it exists and has the SHA-256 listed in CHECKSUMS."""
    if relpath not in CHECKSUMS:
        raise DataError(f"{relpath} has no known checksum; known files: {', '.join(sorted(CHECKSUMS))}")
    path = Path(root) / relpath
    if not path.is_file():
        raise DataError(f"missing data file {path}; {_FIX}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    if _HASHES[key] != CHECKSUMS[relpath]:
        raise DataError(
            f"corrupted data file {path}: SHA-256 {_HASHES[key]} != expected {CHECKSUMS[relpath]}; "
            f"restore it from the source named in the data README, or {_FIX}"
        )
    return path


# ---------------------------------------------------------------------------------------------- MNIST


def load_binarized_mnist(split: Literal["train", "valid", "test"], root: Path) -> np.ndarray:
    """Statically binarized MNIST, float32 (N, 784) of 0/1."""
    path = verified(f"mnist/binarized_mnist_{split}.mat", root)
    x = np.asarray(scipy.io.loadmat(path)["X"], dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"{path}: expected X of shape (N, 784), got {x.shape}")
    return x


def _read_idx(path: Path, magic: int, shape_tail: tuple[int, ...]) -> np.ndarray:
    """One gzip IDX file of unsigned bytes: a big-endian magic, the dimensions, then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = 1 + len(shape_tail)
    header = np.frombuffer(raw[: 4 * (1 + ndim)], dtype=">u4")
    if len(header) != 1 + ndim or header[0] != magic:
        raise DataError(f"{path}: not an IDX file with magic {magic} (got {header[:1].tolist()}); {_FIX}")
    shape = tuple(int(n) for n in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if shape[1:] != shape_tail or data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header shape {shape} does not match {data.size} data bytes")
    return data.reshape(shape)


def load_mnist_test(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The original MNIST test set: images uint8 (10000, 28, 28) and labels int64 (10000,)."""
    images = _read_idx(verified("mnist/t10k-images-idx3-ubyte.gz", root), 2051, (28, 28))
    labels = _read_idx(verified("mnist/t10k-labels-idx1-ubyte.gz", root), 2049, ())
    if len(images) != len(labels):
        raise DataError(f"MNIST test: {len(images)} images but {len(labels)} labels in {root / 'mnist'}")
    return images.copy(), labels.astype(np.int64)


# ------------------------------------------------------------------------------------------ 5G KPIs

DEFAULT_KPIS: tuple[str, ...] = ("RSRP", "RSRQ", "SNR", "CQI", "RSSI", "DL_bitrate", "UL_bitrate", "Speed")
_KPI_ZIP = "kpi5g/5G-production-dataset.zip"


@dataclass(frozen=True)
class Trace:
    """One KPI CSV file: one row per distinct second, in file order."""

    name: str  # path inside the zip
    seconds: np.ndarray  # int64 (T,) seconds since the epoch (timestamps read as UTC)
    values: np.ndarray  # float64 (T, n_kpi), NaN where the file says "-"


def _seconds(stamps: list[str], where: str) -> np.ndarray:
    """'2019.12.16_13.40.04' -> int64 seconds since the epoch."""
    try:
        if any(len(s) != 19 for s in stamps):
            raise ValueError("wrong length")
        iso = [f"{s[0:4]}-{s[5:7]}-{s[8:10]}T{s[11:13]}:{s[14:16]}:{s[17:19]}" for s in stamps]
        return np.array(iso, dtype="datetime64[s]").astype(np.int64)
    except ValueError as e:
        raise DataError(f"{where}: bad Timestamp ({e}); expected e.g. 2019.12.16_13.40.04") from e


def _read_trace(zf: zipfile.ZipFile, name: str, kpis: Sequence[str]) -> Trace:
    where = f"{zf.filename}:{name}"
    with zf.open(name) as raw:
        rows = list(csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")))
    if not rows:
        raise DataError(f"{where}: empty CSV file; the zip is corrupted")
    header, body = rows[0], [r for r in rows[1:] if r]
    missing = [k for k in ("Timestamp", *kpis) if k not in header]
    if missing:
        raise DataError(f"{where}: unknown KPI column(s) {missing}; available columns: {header}")
    cols, stamp = [header.index(k) for k in kpis], header.index("Timestamp")
    try:
        values = np.array([[float("nan") if r[c] == "-" else float(r[c]) for c in cols] for r in body])
    except (ValueError, IndexError) as e:
        raise DataError(f"{where}: unparseable KPI row ({e}); the file is corrupted") from e
    seconds = _seconds([r[stamp] for r in body], where)
    keep = np.sort(np.unique(seconds, return_index=True)[1])  # a repeated second keeps its first row
    return Trace(name, seconds[keep], values.reshape(len(body), len(cols))[keep])


def load_kpi_traces(root: Path, kpis: Sequence[str] = DEFAULT_KPIS) -> list[Trace]:
    """All 83 traces of the 5G data set, sorted by name, read straight from the zip (parsed once per
    process for each verified file version and KPI list)."""
    path = verified(_KPI_ZIP, root)
    stat = path.stat()
    return list(_parse_traces(path, stat.st_size, stat.st_mtime_ns, tuple(kpis)))


@functools.lru_cache(maxsize=4)
def _parse_traces(path: Path, size: int, mtime_ns: int, kpis: tuple[str, ...]) -> tuple[Trace, ...]:
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".csv") and not n.startswith("__MACOSX/"))
        return tuple(_read_trace(zf, n, kpis) for n in names)


def fill_missing(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill NaN runs of at most ``max_gap`` rows per column: forward from the last value before the
    run, or backward from the first value after it when the run starts the series. Longer runs stay
    NaN. Returns a copy (float64 unless the input is another float type)."""
    out = np.array(values, dtype=np.result_type(values, np.float32))
    for col in out.T if out.ndim > 1 else [out]:  # views into out, one per column
        missing = np.isnan(col)
        if not missing.any() or missing.all():
            continue
        edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if end - start <= max_gap:
                col[start:end] = col[start - 1] if start > 0 else col[end]
    return out


def make_windows(trace: Trace, window: int, stride: int, max_gap: int = 5) -> np.ndarray:
    """Windows of ``window`` consecutive seconds, float32 (N, window * n_kpi), time-major.

    The logger skips a second now and then: skipped seconds are put back as missing rows when the
    time gap leaves at most ``max_gap`` of them, and the trace is cut at longer gaps. Each piece is
    gap-filled on its own (no value is carried across a cut) and windowed from its start with
    ``stride``. Windows that still hold NaN are dropped."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    n_kpi = trace.values.shape[1]
    steps = np.diff(trace.seconds)
    cuts = np.flatnonzero((steps < 1) | (steps > max_gap + 1)) + 1
    chunks = [np.empty((0, window * n_kpi))]
    for secs, piece in zip(np.split(trace.seconds, cuts), np.split(trace.values, cuts), strict=True):
        grid = np.full((int(secs[-1] - secs[0]) + 1, n_kpi), np.nan)  # one row per second
        grid[secs - secs[0]] = piece
        seg = fill_missing(grid, max_gap)  # (T_seg, n_kpi)
        starts = np.arange(0, len(seg) - window + 1, stride)
        chunks.append(seg[starts[:, None] + np.arange(window)].reshape(len(starts), window * n_kpi))
    windows = np.concatenate(chunks)  # (N, window * n_kpi), NaN rows still in
    return windows[~np.isnan(windows).any(axis=1)].astype(np.float32)


def window_feature_names(kpis: Sequence[str], window: int) -> list[str]:
    """Names of the flattened window features, e.g. 'RSRP@t0', in make_windows' order."""
    return [f"{k}@t{t}" for t in range(window) for k in kpis]


@dataclass(frozen=True)
class KpiSplit:
    """KPI windows split by trace file; arrays in raw units, mean/std fitted on train only."""

    train: np.ndarray  # float32 (N_train, window * n_kpi)
    valid: np.ndarray
    test: np.ndarray
    train_traces: list[str]
    valid_traces: list[str]
    test_traces: list[str]
    feature_names: list[str]
    kpis: tuple[str, ...]
    window: int
    mean: np.ndarray  # float32 (window * n_kpi,)
    std: np.ndarray  # float32 (window * n_kpi,), 1.0 where the train std is below 1e-6


def load_kpi_split(
    root: Path,
    kpis: Sequence[str] = DEFAULT_KPIS,
    window: int = 10,
    stride: int | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> KpiSplit:
    """Shuffle the trace files with ``seed`` and give whole traces to test, valid and train (at
    least one each, counts rounded from the fractions). ``stride`` (default ``window``) applies to the
    train part only; valid and test windows never overlap."""
    traces = load_kpi_traces(root, kpis)
    n = len(traces)
    n_test, n_valid = max(1, round(test_fraction * n)), max(1, round(valid_fraction * n))
    if n_test + n_valid >= n:
        raise ValueError(
            f"fractions test={test_fraction}, valid={valid_fraction} leave no train trace of {n}"
        )
    order = np.random.default_rng(seed).permutation(n)
    parts = [order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]]
    width = window * len(kpis)

    def windows(idx: np.ndarray, step: int) -> np.ndarray:
        arrays = [make_windows(traces[i], window, step) for i in idx]
        return np.concatenate([np.empty((0, width), np.float32), *arrays])

    test, valid = windows(parts[0], window), windows(parts[1], window)
    train = windows(parts[2], window if stride is None else stride)
    if len(train) == 0:
        raise DataError(f"no complete {window}-second window in the train traces of {root / _KPI_ZIP}")
    std = train.std(axis=0, dtype=np.float64)
    return KpiSplit(
        train=train,
        valid=valid,
        test=test,
        train_traces=sorted(traces[i].name for i in parts[2]),
        valid_traces=sorted(traces[i].name for i in parts[1]),
        test_traces=sorted(traces[i].name for i in parts[0]),
        feature_names=window_feature_names(kpis, window),
        kpis=tuple(kpis),
        window=window,
        mean=train.mean(axis=0, dtype=np.float64).astype(np.float32),
        std=safe_std(std).astype(np.float32),
    )


# ------------------------------------------------------------------------------------- Mulan (ARFF)

MULAN_NS = "http://mulan.sourceforge.net/labels"
MULAN_SETS: dict[str, tuple[str, str | None, str]] = {
    "emotions": ("emotions-train.arff", "emotions-test.arff", "emotions.xml"),
    "birds": ("birds-train.arff", "birds-test.arff", "birds.xml"),
    "cal500": ("cal500.arff", None, "cal500.xml"),
}


@dataclass(frozen=True)
class MultiLabelData:
    """Features and binary labels of one Mulan file."""

    X: np.ndarray  # float32 (N, F), nominal attributes one-hot
    Y: np.ndarray  # int8 (N, L) of 0/1
    feature_names: list[str]
    label_names: list[str]


@dataclass(frozen=True)
class _Attribute:
    name: str
    values: tuple[str, ...] | None  # nominal values, or None for numeric


_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_ATTRIBUTE = re.compile(rf"@attribute\s+({_QUOTED}|\S+)\s+(.+)", re.IGNORECASE)


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _split_commas(text: str) -> list[str]:
    """Comma-separated ARFF tokens, quotes respected (the fast path for unquoted text)."""
    if "'" not in text and '"' not in text:
        return [t.strip() for t in text.split(",")]
    tokens: list[str] = []
    current: list[str] = []
    quote, escaped = "", False  # the open quote character, and whether a backslash precedes ch
    for ch in text:
        if escaped:
            escaped = False
        elif quote:
            escaped = ch == "\\"
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            tokens.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if quote:
        raise ValueError(f"unterminated quote in {text[:60]!r}")
    return [*tokens, "".join(current).strip()]


def _code(attr: _Attribute, token: str) -> float:
    """A value as a float: the number, the index of a nominal value, or NaN for '?'."""
    value = _unquote(token)
    if value == "?":
        return float("nan")
    if attr.values is None:
        return float(value)
    if value not in attr.values:
        raise ValueError(f"{value!r} is not one of {attr.name}'s values {list(attr.values)}")
    return float(attr.values.index(value))


def _parse_arff(path: Path) -> tuple[list[_Attribute], np.ndarray]:
    """The attributes and an (N, n_attr) float64 matrix of coded values (see _code)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read ARFF file {path}: {e}") from e
    attrs: list[_Attribute] = []
    rows: list[list[float]] = []
    in_data = False
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("%"):
            continue
        try:
            if in_data:
                row = [0.0] * len(attrs)  # sparse rows omit zeros (a nominal's first value)
                if text.startswith("{"):
                    for entry in _split_commas(text.strip("{}")):
                        if entry:
                            index, token = entry.split(None, 1)
                            row[int(index)] = _code(attrs[int(index)], token)
                else:
                    tokens = _split_commas(text)
                    if len(tokens) != len(attrs):
                        raise ValueError(f"{len(tokens)} values for {len(attrs)} attributes")
                    row = [_code(a, t) for a, t in zip(attrs, tokens, strict=True)]
                rows.append(row)
            elif text.lower().startswith("@attribute"):
                match = _ATTRIBUTE.fullmatch(text)
                if match is None:
                    raise ValueError("malformed @attribute line")
                kind = match.group(2).strip()
                if kind.startswith("{") and kind.endswith("}"):
                    values: tuple[str, ...] | None = tuple(_unquote(v) for v in _split_commas(kind[1:-1]))
                elif kind.lower() in ("numeric", "real", "integer"):
                    values = None
                else:
                    raise ValueError(f"unsupported attribute type {kind!r} (numeric or nominal only)")
                attrs.append(_Attribute(_unquote(match.group(1)), values))
            elif text.lower().startswith("@data"):
                in_data = True
            elif not text.lower().startswith("@relation"):
                raise ValueError("expected @relation, @attribute or @data")
        except (ValueError, IndexError) as e:
            raise DataError(f"{path}, line {lineno}: {e}") from e
    if not in_data or not attrs:
        raise DataError(f"{path}: no @attribute or @data section; is this an ARFF file?")
    return attrs, np.array(rows, dtype=np.float64).reshape(len(rows), len(attrs))


def _label_names(xml: Path) -> list[str]:
    try:
        root = ElementTree.parse(xml).getroot()
    except (OSError, ElementTree.ParseError) as e:
        raise DataError(f"cannot parse Mulan label file {xml}: {e}") from e
    names = [el.get("name", "") for el in root.iter(f"{{{MULAN_NS}}}label")]
    if not names or "" in names:
        raise DataError(f"{xml}: expected <label name=...> elements in namespace {MULAN_NS}")
    return names


def read_mulan(arff: Path, xml: Path) -> MultiLabelData:
    """One Mulan ARFF file with its XML label list; rows without labels are kept.

    Labels are the attributes the XML names (in XML order), values 0/1; every other attribute is a
    feature: numeric as is, nominal one-hot as 'attr=value' (all zeros when missing). A missing
    numeric value ('?') is replaced by the mean of its column in this file (0 if all are missing).
    """
    attrs, codes = _parse_arff(arff)  # codes: (N, n_attr)
    labels = _label_names(xml)
    column = {a.name: j for j, a in enumerate(attrs)}
    absent = [name for name in labels if name not in column]
    if absent:
        raise DataError(f"{arff}: labels {absent} named in {xml} are not attributes of the ARFF file")
    y_columns, is_label = [], set(labels)
    for name in labels:
        attr, y = attrs[column[name]], codes[:, column[name]]
        if attr.values is not None:  # nominal label: map its value index back to the value
            if not set(attr.values) <= {"0", "1"}:
                raise DataError(f"{arff}: label {name!r} has values {list(attr.values)}, expected 0/1")
            y = np.array([np.nan if np.isnan(c) else float(attr.values[int(c)]) for c in y])
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError(f"{arff}: label {name!r} has values other than 0/1 (or is missing)")
        y_columns.append(y)
    x_columns, feature_names = [], []
    for j, attr in enumerate(attrs):
        if attr.name in is_label:
            continue
        if attr.values is None:
            col, present = codes[:, j], ~np.isnan(codes[:, j])
            x_columns.append(np.where(present, col, col[present].mean() if present.any() else 0.0))
            feature_names.append(attr.name)
        else:
            x_columns.extend((codes[:, j] == k).astype(np.float64) for k in range(len(attr.values)))
            feature_names.extend(f"{attr.name}={v}" for v in attr.values)
    n = len(codes)
    return MultiLabelData(
        X=np.stack(x_columns, axis=1).astype(np.float32) if x_columns else np.zeros((n, 0), np.float32),
        Y=np.stack(y_columns, axis=1).astype(np.int8),
        feature_names=feature_names,
        label_names=labels,
    )


def load_mulan(name: str, root: Path) -> tuple[MultiLabelData, MultiLabelData | None]:
    """A named Mulan set as (train, test), checksums verified; test is None where there is no split."""
    if name not in MULAN_SETS:
        raise DataError(f"unknown Mulan data set {name!r}; known: {', '.join(MULAN_SETS)}")
    train_file, test_file, xml_file = MULAN_SETS[name]
    return read_mulan_pair(verified(f"mulan/{train_file}", root),
                           None if test_file is None else verified(f"mulan/{test_file}", root),
                           verified(f"mulan/{xml_file}", root))


def read_mulan_pair(train_arff: Path, test_arff: Path | None, xml: Path) -> tuple[MultiLabelData, MultiLabelData | None]:
    """Any Mulan set as (train, test) from its files; test is None where there is one ARFF file."""
    train = read_mulan(train_arff, xml)
    if test_arff is None:
        return train, None
    test = read_mulan(test_arff, xml)
    if test.feature_names != train.feature_names:
        raise DataError(f"{test_arff} and {train_arff} have different feature columns")
    return train, test


def drop_unlabelled(d: MultiLabelData) -> MultiLabelData:
    """The rows of ``d`` that have at least one positive label."""
    keep = d.Y.any(axis=1)
    return MultiLabelData(d.X[keep], d.Y[keep], list(d.feature_names), list(d.label_names))
