"""The bulk coding job on a real local Ray cluster (benchmarks/bulk_ray.py): two actors encode a small
Parquet data set of KPI windows into the same codes as `sdlgm encode`, with the fingerprint in every file,
and decode them into the same reconstructions as `sdlgm decode`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from bundle.bulk import META_KEY, BulkError, decode_file, encode_file
from training import datasets

ray = pytest.importorskip("ray")
import bulk_ray  # noqa: E402  (benchmarks/, after the skip: it needs ray)

BUNDLE = REPO / "models" / "kpi5g"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    bulk_ray.start_local(workers=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """900 test windows in 3 Parquet files of 300 rows, with a row id."""
    split = datasets.load_kpi_split(datasets.data_dir(None), kpis=datasets.DEFAULT_KPIS, window=10, stride=2, seed=0)
    x = split.test[:900]
    table = pa.table({"id": pa.array(np.arange(len(x))), **{n: pa.array(x[:, j])
                                                           for j, n in enumerate(split.feature_names)}})
    root = tmp_path_factory.mktemp("ray") / "windows"
    root.mkdir()
    for i in range(3):
        pq.write_table(table.slice(300 * i, 300), root / f"part-{i}.parquet")
    return root


def _sorted(path: Path) -> pa.Table:
    return pq.read_table(path).sort_by("id")


def test_the_ray_job_writes_the_codes_and_reconstructions_of_the_cli(cluster: None, dataset: Path,
                                                                     tmp_path: Path) -> None:
    codes = bulk_ray.run_job("encode", BUNDLE, dataset, tmp_path / "codes", workers=2, fmt="enum", keep=["id"],
                             batch_rows=128)
    assert codes["rows"] == 900 and codes["files"] >= 1 and codes["vectors_per_s"] > 0
    assert codes["metadata"]["fingerprint"] == json.loads((BUNDLE / "manifest.json").read_text())["fingerprint"]
    whole = pq.read_table(dataset)  # the three files as one, for the single-process CLI
    pq.write_table(whole, tmp_path / "windows.parquet")
    encode_file(BUNDLE, tmp_path / "windows.parquet", tmp_path / "cli.parquet", "enum", ["id"], progress=False)
    cli = _sorted(tmp_path / "cli.parquet")
    assert _sorted(tmp_path / "codes").equals(cli)

    rec = bulk_ray.run_job("decode", BUNDLE, tmp_path / "codes", tmp_path / "rec", workers=2, keep=["id"])
    assert rec["rows"] == 900 and rec["metadata"]["format"] == "enum"
    decode_file(BUNDLE, tmp_path / "cli.parquet", tmp_path / "cli-rec.parquet", ["id"], progress=False)
    assert _sorted(tmp_path / "rec").equals(_sorted(tmp_path / "cli-rec.parquet"))


def test_the_ray_job_refuses_a_data_set_without_the_bundles_features(cluster: None, dataset: Path,
                                                                     tmp_path: Path) -> None:
    with pytest.raises(BulkError, match=r"1 not of the bundle \(id\)"):
        bulk_ray.run_job("encode", BUNDLE, dataset, tmp_path / "codes", workers=1)


def test_the_ray_job_refuses_a_folder_mixing_bundles_and_an_output_folder_in_use(cluster: None, dataset: Path,
                                                                                 tmp_path: Path) -> None:
    """Every file's fingerprint is checked, not the first one's: codes of another bundle of the same K and L0
    would decode into wrong reconstructions without an error. And the report counts only this run's files."""
    codes = tmp_path / "codes"
    codes.mkdir()
    encode_file(BUNDLE, dataset / "part-0.parquet", codes / "a.parquet", "v1", ["id"], progress=False)
    table = pq.read_table(codes / "a.parquet")
    meta = json.loads(table.schema.metadata[META_KEY])
    other = table.replace_schema_metadata({META_KEY: json.dumps({**meta, "fingerprint": "0" * 64}).encode()})
    pq.write_table(other, codes / "b.parquet")
    with pytest.raises(BulkError, match=r"b\.parquet does not hold codes of bundle .* \(its fingerprint differs\)"):
        bulk_ray.run_job("decode", BUNDLE, codes, tmp_path / "rec", workers=1, keep=["id"])
    with pytest.raises(BulkError, match=r"codes already holds Parquet files; give an empty or new folder"):
        bulk_ray.run_job("encode", BUNDLE, dataset, codes, workers=1, keep=["id"])
