"""Bulk coding of files (bundle.bulk, `sdlgm encode` / `sdlgm decode`) on real KPI windows through the
committed default bundle: the codes equal the runtime's, the fingerprint travels in the file, a run stopped
(by a chunk limit or a SIGKILL) and resumed writes the same file as one uninterrupted run, and files of the
wrong shape are refused with errors that name the cause."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from bundle import formats
from bundle.bulk import CODE_COLUMN, META_KEY, BulkError, decode_file, encode_file, open_source, parts_dir
from bundle.runtime import open_bundle
from training import datasets
from training.cli import main

BUNDLE = REPO / "models" / "kpi5g"
ROWS = 1200


@pytest.fixture(scope="module")
def windows() -> pa.Table:
    """The first ROWS windows of the test traces as the bundle names its features, with a row id."""
    split = datasets.load_kpi_split(datasets.data_dir(None), kpis=datasets.DEFAULT_KPIS, window=10, stride=2, seed=0)
    x = split.test[:ROWS]
    return pa.table({"id": pa.array(np.arange(len(x)) * 7), **{n: pa.array(x[:, j])
                                                               for j, n in enumerate(split.feature_names)}})


@pytest.fixture(scope="module")
def files(windows: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("windows")
    pq.write_table(windows, root / "w.parquet")
    pacsv.write_csv(windows, root / "w.csv")
    return {"parquet": root / "w.parquet", "csv": root / "w.csv"}


def _codes(path: Path) -> tuple[list[bytes], dict[str, object]]:
    """The codes of a code file as bytes, and its sdlgm metadata."""
    src = open_source(path)
    assert src.metadata is not None
    table = pa.Table.from_batches(list(src.batches([CODE_COLUMN])))
    return table[CODE_COLUMN].to_pylist(), src.metadata


@pytest.mark.parametrize("src_kind, out_kind, fmt", [("parquet", "parquet", "v1"), ("parquet", "csv", "enum"),
                                                     ("csv", "parquet", "enum"), ("csv", "csv", "range")])
def test_encode_then_decode_gives_the_runtime_codes_and_reconstructions(
        windows: pa.Table, files: dict[str, Path], tmp_path: Path, src_kind: str, out_kind: str, fmt: str) -> None:
    runtime = open_bundle(BUNDLE)
    m = runtime.manifest
    x = np.stack([windows[n].to_numpy() for n in m.feature_names], axis=1).astype(np.float32)
    _, counts = runtime.encode(x)
    out = tmp_path / f"codes.{out_kind}"
    assert main(["encode", "--bundle", str(BUNDLE), "--in", str(files[src_kind]), "--out", str(out), "--keep", "id",
                 "--format", fmt, "--chunk-rows", "500", "--no-progress"]) == 0
    assert not parts_dir(out).exists()  # the resume state is gone once the file is whole
    got, meta = _codes(out)
    assert got == formats.pack(fmt, counts, m.code_space, m.entropy)  # type: ignore[arg-type]
    assert meta["fingerprint"] == m.fingerprint and meta["format"] == fmt and meta["model"] == "kpi5g"

    rec = tmp_path / "rec.parquet"
    assert main(["decode", "--bundle", str(BUNDLE), "--in", str(out), "--out", str(rec), "--keep", "id",
                 "--no-progress"]) == 0
    table = pq.read_table(rec)
    assert table.column_names == ["id", *m.feature_names]
    assert table["id"].to_pylist() == windows["id"].to_pylist()
    x_hat = np.stack([table[n].to_numpy() for n in m.feature_names], axis=1)
    np.testing.assert_array_equal(x_hat, runtime.decode(counts.astype(np.float32)))
    assert json.loads(table.schema.metadata[META_KEY])["fingerprint"] == m.fingerprint


@pytest.mark.parametrize("out_kind", ["parquet", "csv"])
def test_a_run_stopped_after_some_chunks_resumes_to_the_same_file(files: dict[str, Path], tmp_path: Path,
                                                                  out_kind: str) -> None:
    whole, part = tmp_path / f"whole.{out_kind}", tmp_path / f"part.{out_kind}"
    opts = {"fmt": "enum", "keep": ["id"], "chunk_rows": 250, "progress": False}
    done = encode_file(BUNDLE, files["parquet"], whole, **opts)  # type: ignore[arg-type]
    assert done["complete"] and done["chunks"] == 5 and done["rows"] == ROWS
    first = encode_file(BUNDLE, files["parquet"], part, stop_after=2, **opts)  # type: ignore[arg-type]
    assert not first["complete"] and first["chunks_done"] == 2 and not part.exists()
    assert json.loads((parts_dir(part) / "progress.json").read_text())["done"] == 2
    rest = encode_file(BUNDLE, files["parquet"], part, **opts)  # type: ignore[arg-type]
    assert rest["complete"] and rest["rows_skipped"] == 500 and rest["rows_coded"] == ROWS - 500
    assert part.read_bytes() == whole.read_bytes()


def test_a_killed_encode_resumes_to_the_same_file(windows: pa.Table, tmp_path: Path) -> None:
    big = tmp_path / "big.parquet"
    pq.write_table(pa.concat_tables([windows] * 20), big)  # 24,000 rows: 120 chunks, seconds of work
    whole, part = tmp_path / "whole.parquet", tmp_path / "part.parquet"
    args = ["encode", "--bundle", str(BUNDLE), "--in", str(big), "--keep", "id", "--chunk-rows", "200",
            "--threads", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", *args, "--out", str(part)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = parts_dir(part) / "progress.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if marker.exists() and json.loads(marker.read_text())["done"] >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the encode ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = json.loads(marker.read_text())["done"]
    assert 3 <= done < 120 and not part.exists()
    assert main([*args, "--out", str(part)]) == 0
    assert main([*args, "--out", str(whole)]) == 0
    assert part.read_bytes() == whole.read_bytes()


def test_a_resume_with_other_options_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "codes.parquet"
    encode_file(BUNDLE, files["parquet"], out, keep=["id"], chunk_rows=250, stop_after=1, progress=False)
    with pytest.raises(BulkError, match=r"differs in chunk_rows, format.*remove .*codes.parquet.parts"):
        encode_file(BUNDLE, files["parquet"], out, fmt="enum", keep=["id"], chunk_rows=300, progress=False)


def _write(table: pa.Table, path: Path) -> Path:
    (pq.write_table if path.suffix == ".parquet" else pacsv.write_csv)(table, path)
    return path


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_file_whose_columns_are_not_the_bundles_feature_names_is_refused(
        windows: pa.Table, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    missing = _write(windows.drop_columns(["RSRP@t0"]), tmp_path / f"missing.{kind}")
    with pytest.raises(SystemExit, match=r"sdlgm encode: .*missing.*: its columns do not match bundle kpi5g's "
                                         r"80 feature names: missing 1 \(RSRP@t0\); 1 not of the bundle \(id\)\. "
                                         r".*--keep COLUMN"):
        main(["encode", "--bundle", str(BUNDLE), "--in", str(missing), "--out", str(tmp_path / "c.parquet")])
    renamed = _write(windows.rename_columns(["id", *[f"f{i}" for i in range(80)]]), tmp_path / f"renamed.{kind}")
    with pytest.raises(BulkError, match=r"missing 80 \(RSRP@t0, RSRQ@t0, SNR@t0, CQI@t0, RSSI@t0 and 75 more\); "
                                        r"80 not of the bundle \(f0, f1, f2, f3, f4 and 75 more\)"):
        encode_file(BUNDLE, renamed, tmp_path / "c.parquet", keep=["id"], progress=False)
    assert not (tmp_path / "c.parquet").exists() and not parts_dir(tmp_path / "c.parquet").exists()


def test_empty_and_non_numeric_values_are_refused(windows: pa.Table, tmp_path: Path) -> None:
    col = windows.schema.get_field_index("SNR@t3")
    holes = windows.set_column(col, "SNR@t3", pa.array([None, *windows["SNR@t3"].to_pylist()[1:]], pa.float32()))
    with pytest.raises(BulkError, match=r"holes.parquet, rows 0\.\.1199: column 'SNR@t3' has 1 empty values"):
        encode_file(BUNDLE, _write(holes, tmp_path / "holes.parquet"), tmp_path / "c.parquet", keep=["id"],
                    progress=False)
    text = windows.set_column(col, "SNR@t3", pa.array(["high"] * windows.num_rows))
    with pytest.raises(BulkError, match=r"In CSV column #\d+: .*'high'"):
        encode_file(BUNDLE, _write(text, tmp_path / "text.csv"), tmp_path / "c2.parquet", keep=["id"],
                    progress=False)


def test_integer_features_beyond_float32_precision_are_rounded_as_the_service_rounds(windows: pa.Table,
                                                                                     tmp_path: Path) -> None:
    """A byte counter held as int64 above 2**24 is encoded from its float32 rounding, not refused."""
    col = windows.schema.get_field_index("SNR@t3")
    big = np.arange(windows.num_rows, dtype=np.int64) + (1 << 40) + 1
    table = windows.set_column(col, "SNR@t3", pa.array(big, pa.int64()))
    encode_file(BUNDLE, _write(table, tmp_path / "ints.parquet"), tmp_path / "ints-codes.parquet", keep=["id"],
                progress=False)
    as_floats = windows.set_column(col, "SNR@t3", pa.array(big.astype(np.float32)))
    encode_file(BUNDLE, _write(as_floats, tmp_path / "f.parquet"), tmp_path / "f-codes.parquet", keep=["id"], progress=False)
    assert _codes(tmp_path / "ints-codes.parquet")[0] == _codes(tmp_path / "f-codes.parquet")[0]


def test_a_bundle_that_is_not_there_is_one_line_not_a_traceback(files: dict[str, Path], tmp_path: Path) -> None:
    codes = tmp_path / "codes.parquet"
    encode_file(BUNDLE, files["csv"], codes, keep=["id"], progress=False)
    for command, given in (("encode", files["csv"]), ("decode", codes)):
        with pytest.raises(SystemExit) as stop:
            main([command, "--bundle", str(tmp_path / "nothing"), "--in", str(given),
                  "--out", str(tmp_path / "out.parquet")])
        assert str(stop.value).startswith(f"sdlgm {command}: "), stop.value
        assert "no manifest.json" in str(stop.value)


def test_decode_refuses_codes_of_another_bundle_and_files_without_codes(files: dict[str, Path], tmp_path: Path) -> None:
    codes = tmp_path / "codes.parquet"
    encode_file(BUNDLE, files["parquet"], codes, keep=["id"], progress=False)
    short = json.loads((BUNDLE / "manifest.json").read_text())["fingerprint"][:12]
    with pytest.raises(SystemExit, match=rf"holds codes of model kpi5g \(fingerprint {short}\), not of bundle "
                                         r"mnist .*decode it with the bundle that encoded it"):
        main(["decode", "--bundle", str(REPO / "models" / "mnist"), "--in", str(codes), "--out",
              str(tmp_path / "x.parquet")])
    with pytest.raises(BulkError, match="carries no sdlgm metadata: not a code file"):
        decode_file(BUNDLE, files["csv"], tmp_path / "x.csv", progress=False)
    with pytest.raises(BulkError, match=r"unknown file kind '\.json'; name it \.csv, \.parquet or \.pq"):
        encode_file(BUNDLE, files["csv"], tmp_path / "x.json", progress=False)


def test_an_empty_file_gives_an_empty_file_of_codes(windows: pa.Table, tmp_path: Path) -> None:
    empty = _write(windows.slice(0, 0), tmp_path / "empty.parquet")
    out = tmp_path / "codes.csv"
    assert encode_file(BUNDLE, empty, out, keep=["id"], progress=False)["rows"] == 0
    assert out.read_text().splitlines()[1:] == ['"id","code"']


NO_TORCH = """
import importlib.abc, sys

class Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "model") or (name.startswith("training.") and name != "training.cli"):
            raise ImportError(f"bulk coding must not import {name}")
        return None

sys.meta_path.insert(0, Forbid())
from training.cli import main

bundle, src, codes, rec = sys.argv[1:]
assert main(["encode", "--bundle", bundle, "--in", src, "--out", codes, "--keep", "id", "--no-progress"]) == 0
assert main(["decode", "--bundle", bundle, "--in", codes, "--out", rec, "--keep", "id", "--no-progress"]) == 0
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "model") or m.startswith("training."))
assert bad == ["training.cli"], bad
print("ok")
"""


def test_sdlgm_encode_and_decode_import_no_torch(files: dict[str, Path], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", NO_TORCH, str(BUNDLE), str(files["csv"]),
                           str(tmp_path / "c.parquet"), str(tmp_path / "r.csv")], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
