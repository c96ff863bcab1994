"""Bulk compression of files, torch-free: a CSV or Parquet table of vectors -> a file of codes, and back.

    sdlgm encode --bundle models/kpi5g --in windows.parquet --out codes.parquet [--format enum]
    sdlgm decode --bundle models/kpi5g --in codes.parquet --out windows-hat.parquet

The input streams through pyarrow's readers in chunks of `chunk_rows` rows; each chunk is coded by the
bundle in onnxruntime (`bundle.runtime`) and the formats of `bundle.formats`, and written as one part file
under `<out>.parts/` beside a progress marker (`progress.json`, the count of finished chunks). A rerun
after a crash, a kill or `stop_after` skips the finished chunks; once the last chunk is done the parts are
joined into `out` (written to a temporary name and renamed) and the parts folder is removed. A rerun with
another input, bundle, format, chunk size or kept columns refuses to mix them with the finished parts.

Files (the kind follows the suffix: .csv, or .parquet / .pq):
  vectors          one column per feature, named as the bundle's manifest names them (`feature_names`, in
                   any order), and the columns named in `keep` (carried over unchanged, e.g. a row id). A
                   missing feature, any other column, an empty or non-numeric value is refused (BulkError,
                   naming it).
  codes            the `keep` columns and `code`, each row's code as the bytes of its format (Parquet:
                   binary; CSV: base64, as the service's JSON `binary`). The model, its fingerprint and the
                   format travel in the file: Parquet's schema metadata (key "sdlgm", JSON), a CSV file's
                   first line `# sdlgm {JSON}`. decode refuses codes of any other bundle.
  reconstructions  the `keep` columns and one float32 column per feature, in original units.

`Encoder` and `Decoder` are the per-chunk functions (pyarrow Table -> Table): the same callables run as a
Ray Data `map_batches` job (benchmarks/bulk_ray.py).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from bundle import formats
from bundle.formats import Format
from bundle.manifest import Manifest
from bundle.runtime import ModelRuntime, open_bundle

CODE_COLUMN = "code"
META_KEY = b"sdlgm"
CSV_META_PREFIX = "# sdlgm "
PROGRESS = "progress.json"
DEFAULT_CHUNK_ROWS = 8192

FileKind = Literal["csv", "parquet"]
ChunkFn = Callable[[pa.Table], pa.Table]


class BulkError(ValueError):
    """A file, an option or a resume state that bulk coding refuses; the message names the cause and the fix."""


def file_kind(path: Path) -> FileKind:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise BulkError(f"{path}: unknown file kind {suffix!r}; name it .csv, .parquet or .pq")


def code_metadata(m: Manifest, fmt: Format) -> dict[str, Any]:
    """What a code file says of the codes it holds: enough to refuse decoding them with another bundle."""
    return {"model": m.name, "version": m.version, "fingerprint": m.fingerprint, "format": fmt, "D": m.D, "K": m.K,
            "L0": m.L0}


def check_columns(names: Sequence[str], wanted: Sequence[str], keep: Sequence[str], where: str,
                  what: str) -> None:
    """Refuse unless the columns are exactly `wanted` (in any order) and `keep`."""
    have = set(names)
    missing = [c for c in [*wanted, *keep] if c not in have]
    allowed = {*wanted, *keep}
    extra = [c for c in names if c not in allowed]
    if not (missing or extra):
        return

    def few(cols: list[str]) -> str:
        return ", ".join(cols[:5]) + (f" and {len(cols) - 5} more" if len(cols) > 5 else "")

    parts = [f"missing {len(missing)} ({few(missing)})"] if missing else []
    parts += [f"{len(extra)} not of the bundle ({few(extra)})"] if extra else []
    raise BulkError(f"{where}: its columns do not match {what}: {'; '.join(parts)}. Name the columns as the "
                    "bundle's manifest does (feature_names); carry other columns over with --keep COLUMN")


# ------------------------------------------------------------------------------------ per-chunk functions


class Encoder:
    """A chunk of vectors (the bundle's feature columns and `keep`) -> its codes (`keep` and `code`)."""

    def __init__(self, bundle_dir: str | Path, fmt: Format = "v1", keep: Sequence[str] = (), threads: int = 0,
                 runtime: ModelRuntime | None = None) -> None:
        self.runtime = runtime or open_bundle(Path(bundle_dir), threads=(threads, 1))
        m = self.runtime.manifest
        if fmt not in m.formats:
            raise BulkError(f"bundle {m.name} offers the code formats {list(m.formats)}, not {fmt!r}")
        self.fmt, self.keep = fmt, tuple(keep)
        self.metadata = code_metadata(m, fmt)

    @property
    def manifest(self) -> Manifest:
        return self.runtime.manifest

    def check(self, names: Sequence[str], where: str) -> None:
        m = self.manifest
        check_columns(names, m.feature_names, self.keep, where, f"bundle {m.name}'s {m.D} feature names")

    def __call__(self, table: pa.Table) -> pa.Table:
        self.check(table.column_names, "the chunk")
        m = self.manifest
        x = feature_matrix(table, m.feature_names)
        counts = self.runtime.encode(x)[1] if len(x) else np.zeros((0, m.K), dtype=np.int64)
        data, offsets = formats.pack_stream(self.fmt, counts, m.code_space, m.entropy)
        code = pa.Array.from_buffers(pa.binary(), len(counts), [None, pa.py_buffer(offsets.astype(np.int32)),
                                                                pa.py_buffer(data)])
        out = pa.table({**{k: table[k] for k in self.keep}, CODE_COLUMN: code})
        return out.replace_schema_metadata({META_KEY: json.dumps(self.metadata)})


class Decoder:
    """A chunk of codes (`keep` and `code`, binary) -> reconstructions (`keep` and one column per feature)."""

    def __init__(self, bundle_dir: str | Path, fmt: Format = "v1", keep: Sequence[str] = (), threads: int = 0,
                 runtime: ModelRuntime | None = None) -> None:
        self.runtime = runtime or open_bundle(Path(bundle_dir), threads=(threads, 1))
        m = self.runtime.manifest
        if not self.runtime.has_decoder:
            raise BulkError(f"bundle {m.name} has no decoder (a supervised bundle): its codes do not decode")
        if fmt not in m.formats:
            raise BulkError(f"bundle {m.name} offers the code formats {list(m.formats)}, not {fmt!r}")
        self.fmt, self.keep = fmt, tuple(keep)

    def check(self, names: Sequence[str], where: str) -> None:
        check_columns(names, [CODE_COLUMN], self.keep, where, "a code file's")

    def __call__(self, table: pa.Table) -> pa.Table:
        self.check(table.column_names, "the chunk")
        m = self.runtime.manifest
        blobs = table[CODE_COLUMN].to_pylist()
        counts = np.zeros((len(blobs), m.K), dtype=np.float32)
        for i, blob in enumerate(blobs):
            if blob is None:
                raise BulkError(f"row {i} of the chunk has no code")
            try:
                counts[i] = formats.unpack(self.fmt, blob, m.code_space, m.entropy)
            except formats.CodeFormatError as exc:
                raise BulkError(f"row {i} of the chunk is not a {self.fmt} code of bundle {m.name}: {exc}") from exc
        x_hat = self.runtime.decode(counts) if len(counts) else np.zeros((0, m.D), dtype=np.float32)
        cols = {k: table[k] for k in self.keep}
        cols.update({name: pa.array(x_hat[:, j]) for j, name in enumerate(m.feature_names)})
        out = pa.table(cols)
        return out.replace_schema_metadata({META_KEY: json.dumps(code_metadata(m, self.fmt))})


def feature_matrix(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """(B, D) float32 of the named columns; an empty or non-numeric value is a BulkError naming it."""
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        col = table[name]
        if col.null_count:
            raise BulkError(f"column {name!r} has {col.null_count} empty values in this chunk; every feature "
                            "needs a value")
        try:
            x[:, j] = col.cast(pa.float32(), safe=False).to_numpy()  # rounded as the service rounds JSON numbers
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BulkError(f"column {name!r} is not numeric ({col.type}): {exc}") from exc
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        row, j = bad[0]
        raise BulkError(f"column {names[j]!r} holds {x[row, j]} at row {row} of this chunk; features must be finite")
    return x


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Source:
    """An input file opened for streaming: its columns (with their types when the file records them:
    Parquet), the sdlgm metadata it carries, and its row count when the file says it (Parquet)."""

    path: Path
    kind: FileKind
    columns: list[str]
    metadata: dict[str, Any] | None
    rows: int | None
    schema: pa.Schema | None = None

    @property
    def holds_codes(self) -> bool:
        return self.metadata is not None and CODE_COLUMN in self.columns

    def _csv_types(self, columns: Sequence[str], floats: Sequence[str]) -> dict[str, pa.DataType]:
        types: dict[str, pa.DataType] = {c: pa.float32() for c in floats}
        if self.holds_codes and CODE_COLUMN in columns:
            types[CODE_COLUMN] = pa.string()
        return types

    def batches(self, columns: Sequence[str], floats: Sequence[str] = (),
                block_bytes: int = 1 << 20) -> Iterator[pa.RecordBatch]:
        """The file's rows in the reader's own batches (any sizes), the named columns only; in a CSV file the
        `floats` columns are read as float32 and a code column from base64 to bytes."""
        try:
            if self.kind == "parquet":
                yield from pq.ParquetFile(self.path).iter_batches(batch_size=DEFAULT_CHUNK_ROWS,
                                                                  columns=list(columns))
                return
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(skip_rows=1 if self.metadata else 0, block_size=block_bytes),
                convert_options=pacsv.ConvertOptions(include_columns=list(columns),
                                                     column_types=self._csv_types(columns, floats)))
            for batch in reader:
                yield _from_base64(batch) if self.holds_codes and CODE_COLUMN in columns else batch
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BulkError(f"{self.path}: {exc}") from exc

    def empty(self, columns: Sequence[str], floats: Sequence[str] = ()) -> pa.Table:
        """No rows, the columns typed as batches() gives them: what the output of an empty file is built from."""
        def typed(c: str) -> pa.DataType:
            if self.schema is not None:
                return self.schema.field(c).type
            if c in floats:
                return pa.float32()
            return pa.binary() if c == CODE_COLUMN and self.holds_codes else pa.string()

        return pa.table({c: pa.array([], typed(c)) for c in columns})


def open_source(path: Path) -> Source:
    """Read an input file's header (its columns and metadata), without its rows."""
    if not path.is_file():
        raise BulkError(f"{path}: no such file")
    kind = file_kind(path)
    if kind == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BulkError(f"{path}: not a readable Parquet file: {exc}") from exc
        schema = pf.schema_arrow
        raw = (schema.metadata or {}).get(META_KEY)
        return Source(path, kind, list(schema.names), json.loads(raw) if raw else None, pf.metadata.num_rows,
                      schema)
    meta: dict[str, Any] | None = None
    with path.open(newline="") as f:
        first = f.readline()
        if first.startswith(CSV_META_PREFIX):
            meta = json.loads(first[len(CSV_META_PREFIX):])
            first = f.readline()
    return Source(path, kind, next(csv.reader([first]), []), meta, None)


def _from_base64(batch: pa.RecordBatch) -> pa.RecordBatch:
    i = batch.schema.get_field_index(CODE_COLUMN)
    try:
        blobs = [None if s is None else base64.b64decode(s, validate=True) for s in batch.column(i).to_pylist()]
    except ValueError as exc:
        raise BulkError(f"a code of the CSV file is not base64: {exc}") from exc
    return batch.set_column(i, CODE_COLUMN, pa.array(blobs, pa.binary()))


def fixed_chunks(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The rows of the batches in tables of exactly `rows` rows (the last one shorter): chunk i is rows
    [i rows, (i + 1) rows) however the reader cut the file, so a resumed run counts the same chunks."""
    pending: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - n, batch.num_rows)
            pending.append(batch.slice(0, take))
            n += take
            batch = batch.slice(take)
            if n == rows:
                yield pa.Table.from_batches(pending)
                pending, n = [], 0
    if n:
        yield pa.Table.from_batches(pending)


# ------------------------------------------------------------------------------------------ writing


def _to_csv_table(table: pa.Table) -> pa.Table:
    """A code column as base64 text (CSV holds no bytes)."""
    if CODE_COLUMN not in table.column_names or not pa.types.is_binary(table.schema.field(CODE_COLUMN).type):
        return table
    text = pa.array([base64.b64encode(b).decode() for b in table[CODE_COLUMN].to_pylist()], pa.string())
    return table.set_column(table.schema.get_field_index(CODE_COLUMN), CODE_COLUMN, text)


def write_output(parts: Sequence[Path], empty: pa.Table, out: Path, csv_header: dict[str, Any] | None) -> None:
    """Join the part files into `out` (atomically: a temporary file renamed). `empty` gives the schema and
    metadata when there are no parts; a CSV file of codes starts with its `# sdlgm` line."""
    tmp = out.with_name(out.name + ".tmp")
    schema = pq.read_schema(parts[0]) if parts else empty.schema
    if file_kind(out) == "parquet":
        with pq.ParquetWriter(tmp, schema) as w:
            for p in parts:
                w.write_table(pq.read_table(p).replace_schema_metadata(schema.metadata))
    else:
        with tmp.open("wb") as f:
            if csv_header is not None:
                f.write((CSV_META_PREFIX + json.dumps(csv_header) + "\n").encode())
            tables = (_to_csv_table(pq.read_table(p).replace_schema_metadata(None)) for p in parts)
            first = next(tables, None)
            if first is None:
                first = _to_csv_table(empty.replace_schema_metadata(None))
            with pacsv.CSVWriter(f, first.schema) as w:
                w.write_table(first)
                for t in tables:
                    w.write_table(t)
    os.replace(tmp, out)


# ----------------------------------------------------------------------------------- resumable runs


def _job(command: str, src: Source, bundle_fingerprint: str, fmt: Format, chunk_rows: int, keep: Sequence[str],
         out: Path) -> dict[str, Any]:
    """What a resume must match: the same input file (path, size, modification time), bundle, options."""
    st = src.path.stat()
    return {"command": command, "input": str(src.path.resolve()), "input_bytes": st.st_size,
            "input_mtime_ns": st.st_mtime_ns, "fingerprint": bundle_fingerprint, "format": fmt,
            "chunk_rows": chunk_rows, "keep": list(keep), "output": file_kind(out)}


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def run_chunks(fn: ChunkFn, chunks: Iterable[pa.Table], empty: pa.Table, out: Path, job: dict[str, Any],
               rows: int | None, stop_after: int | None, progress: bool,
               csv_header: dict[str, Any] | None) -> dict[str, Any]:
    """Apply fn to every chunk not yet done, one part file each, then join the parts into out."""
    work = parts_dir(out)
    marker = work / PROGRESS
    done = 0
    if marker.is_file():
        state = json.loads(marker.read_text())
        if state["job"] != job:
            diff = sorted(k for k in job if state["job"].get(k) != job[k])
            raise BulkError(f"{work} holds a run of another job (it differs in {', '.join(diff)}); rerun with "
                            f"the same options to resume it, or remove {work} to start over")
        done = int(state["done"])
    else:
        work.mkdir(parents=True, exist_ok=True)
        _write_json(marker, {"job": job, "done": 0})
    start, rows_coded, skipped, new = time.perf_counter(), 0, 0, 0
    bar = tqdm(total=rows, unit="vec", unit_scale=True, disable=not progress, desc=out.name, dynamic_ncols=True)
    with bar:
        for i, chunk in enumerate(chunks):
            if i < done:
                skipped += chunk.num_rows
                bar.update(chunk.num_rows)
                continue
            if stop_after is not None and new >= stop_after:
                return {"out": str(out), "complete": False, "chunks_done": done, "rows_coded": rows_coded,
                        "resume_dir": str(work)}
            part = work / f"part-{i:06d}.parquet"
            tmp = part.with_name(part.name + ".tmp")
            try:
                coded = fn(chunk)
            except BulkError as exc:
                first = i * int(job["chunk_rows"])
                raise BulkError(f"{job['input']}, rows {first}..{first + chunk.num_rows - 1}: {exc}") from exc
            pq.write_table(coded, tmp)
            os.replace(tmp, part)
            done, new, rows_coded = i + 1, new + 1, rows_coded + chunk.num_rows
            _write_json(marker, {"job": job, "done": done})
            bar.update(chunk.num_rows)
    seconds = time.perf_counter() - start
    write_output([work / f"part-{i:06d}.parquet" for i in range(done)], empty, out, csv_header)
    shutil.rmtree(work)
    return {"out": str(out), "complete": True, "chunks": done, "rows": rows_coded + skipped,
            "rows_coded": rows_coded, "rows_skipped": skipped, "seconds": seconds,
            "vectors_per_s": rows_coded / seconds if seconds > 0 else None}


def _check_out(src: Path, out: Path) -> None:
    file_kind(out)
    if out.resolve() == src.resolve():
        raise BulkError(f"--out {out} is the input file; write the output to another file")


def encode_file(bundle_dir: Path, src_path: Path, out: Path, fmt: Format = "v1", keep: Sequence[str] = (),
                chunk_rows: int = DEFAULT_CHUNK_ROWS, threads: int = 0, stop_after: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """A file of vectors -> a file of codes (module docstring); resumes an unfinished run of the same job.
    stop_after: code at most this many new chunks, then stop (the run resumes later)."""
    if chunk_rows < 1:
        raise BulkError(f"chunk_rows must be at least 1, not {chunk_rows}")
    _check_out(src_path, out)
    encoder = Encoder(bundle_dir, fmt, keep, threads)
    m = encoder.manifest
    src = open_source(src_path)
    encoder.check(src.columns, str(src_path))
    columns = [*keep, *m.feature_names]
    chunks = fixed_chunks(src.batches(columns, m.feature_names), chunk_rows)
    empty = encoder(src.empty(columns, m.feature_names))
    job = _job("encode", src, m.fingerprint, fmt, chunk_rows, keep, out)
    header = encoder.metadata if file_kind(out) == "csv" else None
    return {"fingerprint": m.fingerprint, "format": fmt,
            **run_chunks(encoder, chunks, empty, out, job, src.rows, stop_after, progress, header)}


def decode_file(bundle_dir: Path, src_path: Path, out: Path, keep: Sequence[str] = (),
                chunk_rows: int = DEFAULT_CHUNK_ROWS, threads: int = 0, stop_after: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """A file of codes (written by encode_file or the Ray job) -> a file of reconstructions; refuses codes
    of another bundle."""
    if chunk_rows < 1:
        raise BulkError(f"chunk_rows must be at least 1, not {chunk_rows}")
    _check_out(src_path, out)
    src = open_source(src_path)
    if src.metadata is None:
        raise BulkError(f"{src_path} carries no sdlgm metadata: not a code file written by `sdlgm encode`")
    runtime = open_bundle(Path(bundle_dir), threads=(threads, 1))
    m = runtime.manifest
    if src.metadata.get("fingerprint") != m.fingerprint:
        raise BulkError(f"{src_path} holds codes of model {src.metadata.get('model')} (fingerprint "
                        f"{str(src.metadata.get('fingerprint'))[:12]}), not of bundle {m.name} (fingerprint "
                        f"{m.fingerprint[:12]}): decode it with the bundle that encoded it")
    decoder = Decoder(bundle_dir, src.metadata["format"], keep, runtime=runtime)
    decoder.check(src.columns, str(src_path))
    columns = [*keep, CODE_COLUMN]
    chunks = fixed_chunks(src.batches(columns), chunk_rows)
    empty = decoder(src.empty(columns))
    job = _job("decode", src, m.fingerprint, decoder.fmt, chunk_rows, keep, out)
    return {"fingerprint": m.fingerprint, "format": decoder.fmt,
            **run_chunks(decoder, chunks, empty, out, job, src.rows, stop_after, progress, None)}

