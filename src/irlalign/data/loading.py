"""Load a dataset from one string: a local file, a `save_to_disk` folder, a folder of shards, or a
Hub dataset written `hub:<org>/<name>` (a plain string is always a local path, see
`irlalign.paths`). Rows in a public layout (HH-RLHF, UltraFeedback, TL;DR, Alpaca) come back in
the library's formats (`irlalign.data.adapters`).

A folder of shards is read as one dataset: `.jsonl`/`.json`/`.parquet`/`.csv` files of one
extension (`data-00000-of-00003.jsonl`, ...), in name order. Files named after a split
(`train-00000-of-00002.parquet`, `test.jsonl`) or split folders (`train/`, `test/`, each holding
shards) give the `split` asked for; a Hub snapshot's `data/` folder is looked into. Each shard is
checked on its own first, so an error names the shard file and the row within it.

A file that cannot be read as rows fails with one `DataFileError` naming the file and, where
there is one, the line or row: empty files, text that is not UTF-8, a JSON line that does not
parse (a file cut short), a CSV row whose fields do not match the header or whose quotes never
close, an unreadable parquet or arrow file, a missing split. The text formats are scanned before
`datasets` reads them, because `datasets` reports these as exceptions without a location.

Rows given in memory (a list of dicts, a `datasets.Dataset`) are validated like a file's rows
and then stored once as a `save_to_disk` folder named by a digest of their content
(`store_in_memory`): a run then reads a path like any other, its `config.yaml` records where its
rows are, and a resumed or repeated run finds the same folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets, load_dataset, load_from_disk

from irlalign.data.adapters import adapt_list, convert_row, layout_of
from irlalign.data.formats import (
    IN_MEMORY,
    DataWarning,
    ValidatedFormat,
    check_in_memory,
    detect_format,
    validate_rows,
)
from irlalign.errors import root_cause
from irlalign.paths import hub_id, local_path, missing_message

# datasets' packaged builder for each local file extension.
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Files `save_to_disk` writes: a DatasetDict folder has the first, a Dataset folder the others.
DISK_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


class DataFileError(ValueError):
    """A data file or folder that cannot be read as rows; the message names it and, where there
    is one, the line or row."""


def load_rows(spec: str, split: str = "train", prefer: str | None = None) -> Dataset:
    """Rows from `spec`: a `.jsonl`/`.json`/`.parquet`/`.csv` file, a `save_to_disk` folder
    (a `DatasetDict` gives its `split`), a folder of shards, or `hub:<org>/<name>`, a Hugging
    Face Hub dataset; rows in a public layout are rewritten into the library's formats.
    ``prefer="preference"``: rows holding both `messages` and `chosen`/`rejected` (as
    HuggingFaceH4/ultrafeedback_binarized does) are read as pairs, not conversations.

    Raises FileNotFoundError naming `spec` when the path does not exist or the Hub dataset cannot
    be loaded, and `DataFileError` (a ValueError) for everything that makes a file unreadable.
    """
    name = hub_id(spec)
    path = local_path(spec)
    if name is not None:
        rows, where = _load_hub(spec, name, split), f"{spec} [{split}]"
    elif path.is_file():
        rows, where = _load_file(path, spec), spec
    elif path.is_dir():
        rows, where = _load_folder(path, spec, split, prefer), f"{spec} [{split}]"
    else:
        raise FileNotFoundError(missing_message(spec, "file or folder"))
    return adapt_dataset(rows, where, prefer=prefer)


def adapt_dataset(
    rows: Dataset, source: str, rows_of: str | None = None, prefer: str | None = None
) -> Dataset:
    """``rows`` in the library's formats: a public layout rewritten row by row (errors name
    ``source`` and the row), standard rows returned as they are."""
    columns = set(rows.column_names)
    if prefer == "preference" and {"messages", "chosen", "rejected"} <= columns:
        rows = rows.remove_columns("messages")  # the chosen conversation, kept beside the pairs
    if len(rows) == 0:
        return rows
    layout = layout_of(rows.column_names, rows[0])
    if layout is None:
        return rows

    def rewrite(row: dict[str, Any], index: int) -> dict[str, Any]:
        return convert_row(layout, row, index, source, rows_of)

    drop = [c for c in layout.replaces if c in columns]
    with _quiet():
        return rows.map(rewrite, with_indices=True, remove_columns=drop)


def _load_hub(spec: str, name: str, split: str) -> Dataset:
    try:
        return load_dataset(name, split=split)
    except Exception as err:  # datasets raises many types for offline / missing repos / splits
        message = f"{spec}: loading it from the Hub failed: {root_cause(err)}"
        raise FileNotFoundError(message) from err


# ---- single files


def _load_file(path: Path, spec: str) -> Dataset:
    suffix = path.suffix.lower()
    builder = BUILDERS.get(suffix)
    if builder is None:
        raise DataFileError(
            f"{spec}: unsupported file extension {path.suffix!r}; "
            f"expected one of {sorted(BUILDERS)} or a folder written by save_to_disk"
        )
    if path.stat().st_size == 0:
        raise DataFileError(f"{spec}: the file is empty")
    PRECHECKS[suffix](path, spec)
    try:
        # A local file is one split whatever its name; load_dataset calls it "train".
        return load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:
        raise _explain_failure(path, spec, err) from err


def _utf8_lines(path: Path, spec: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every line, failing on the first one that is not UTF-8."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            # A byte-order mark (Windows editors write one) is not part of the first line.
            codec = "utf-8-sig" if lineno == 1 else "utf-8"
            try:
                yield lineno, raw.decode(codec)
            except UnicodeDecodeError as err:
                raise DataFileError(
                    f"{spec}: line {lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at "
                    f"column {err.start + 1}); save the file as UTF-8"
                ) from None


def _check_utf8(path: Path, spec: str) -> None:
    for _ in _utf8_lines(path, spec):
        pass


def _cut_hint(is_last: bool) -> str:
    return "; the file looks cut short" if is_last else ""


def _scan_jsonl(path: Path, spec: str) -> None:
    """Every non-blank line one JSON object; at least one row."""
    rows, last = 0, _last_line_number(path)
    for lineno, text in _utf8_lines(path, spec):
        if not text.strip():
            continue
        where = f"{spec}: line {lineno} (row {rows})"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            hint = _cut_hint(lineno == last and not text.rstrip().endswith("}"))
            raise DataFileError(f"{where}: not valid JSON ({_json_problem(err)}){hint}") from None
        if not isinstance(value, dict):
            raise DataFileError(f"{where}: expected a JSON object, got {_json_type(value)}")
        rows += 1
    if rows == 0:
        raise DataFileError(f"{spec}: the file holds no rows (only blank lines)")


def _json_problem(err: json.JSONDecodeError) -> str:
    return f"{err.msg.removesuffix(' at')} at column {err.colno}"


def _last_line_number(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _scan_csv(path: Path, spec: str) -> None:
    """A header, then rows with exactly the header's number of fields and closed quotes."""
    _check_utf8(path, spec)
    last = _last_line_number(path)
    # utf-8-sig: a byte-order mark must not become part of the first column's name.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        header = _csv_record(reader, spec, -1, last)
        if not header:
            raise DataFileError(f"{spec}: line 1: expected a header line of column names")
        rows = 0
        while (record := _csv_record(reader, spec, rows, last)) is not None:
            if not record:  # a blank line; pandas skips them too
                continue
            if len(record) != len(header):
                where = f"{spec}: row {rows} (line {reader.line_num})"
                short = len(record) < len(header) and reader.line_num == last
                raise DataFileError(
                    f"{where}: {_count(len(record), 'field')}, but the header has "
                    f"{len(header)} ({', '.join(header)}){_cut_hint(short)}"
                )
            rows += 1
    if rows == 0:
        raise DataFileError(f"{spec}: the file holds no rows (only the header line)")
    _warn_unterminated_csv(path, spec, rows)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _csv_record(reader: Any, spec: str, row: int, last: int) -> list[str] | None:
    """The next record, or None at the end; a quoting error becomes one located line."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as err:
        where = f"{spec}: line {reader.line_num}" if row < 0 else f"{spec}: row {row}"
        if row >= 0:
            where += f" (line {reader.line_num})"
        problem = "a quoted field never closes" if "end of data" in str(err) else str(err)
        raise DataFileError(f"{where}: {problem}{_cut_hint(reader.line_num >= last)}") from None


def _warn_unterminated_csv(path: Path, spec: str, rows: int) -> None:
    # Every CSV writer ends its last line; a file cut inside the last unquoted field still has
    # the right number of fields, and a missing line ending is all that gives it away.
    with path.open("rb") as f:
        f.seek(-1, 2)
        ended = f.read(1) in (b"\n", b"\r")
    if not ended:
        warnings.warn(
            f"{spec}: row {rows - 1}: the last line has no line ending; if the file was cut "
            "short, this row is incomplete",
            DataWarning,
            stacklevel=4,
        )


def _check_parquet(path: Path, spec: str) -> None:
    import pyarrow.parquet as pq

    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as err:  # pyarrow: ArrowInvalid, OSError for corrupt or cut files
        raise DataFileError(f"{spec}: not a readable parquet file ({root_cause(err)})") from None
    if rows == 0:
        raise DataFileError(f"{spec}: the file holds no rows")


PRECHECKS = {
    ".jsonl": _scan_jsonl,
    ".json": _check_utf8,
    ".csv": _scan_csv,
    ".parquet": _check_parquet,
}


def _explain_failure(path: Path, spec: str, err: Exception) -> DataFileError:
    """One located line for a file `datasets` could not read despite the scans above."""
    if path.suffix.lower() in (".json", ".jsonl"):
        rows = _python_rows(path, spec)
        if not rows:
            return DataFileError(f"{spec}: the file holds no rows")
        # datasets fails on columns whose type changes from row to row; validating the rows
        # as Python values names the row and field instead.
        from irlalign.data.formats import check_dataset

        check_dataset(rows, spec)
    if "corresponds to no data" in str(err):
        return DataFileError(f"{spec}: the file holds no rows")
    return DataFileError(f"{spec}: cannot read it as rows ({root_cause(err)})")


def _python_rows(path: Path, spec: str) -> list[dict[str, Any]]:
    """The rows of a .json/.jsonl file read with the json module (a located error if bad)."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg != "Extra data":
            cut = not text.rstrip().endswith(("]", "}"))  # how every complete document ends
            raise DataFileError(
                f"{spec}: line {err.lineno}: not valid JSON ({_json_problem(err)}){_cut_hint(cut)}"
            ) from None
        _scan_jsonl(path, spec)  # several documents: JSON lines in a .json file
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(value, dict):
        raise DataFileError(
            f"{spec}: expected a list of row objects (or one object per line), got one object "
            f"with keys {sorted(value)[:5]}"
        )
    if not isinstance(value, list):
        raise DataFileError(f"{spec}: expected a list of row objects, got {_json_type(value)}")
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise DataFileError(f"{spec}: row {i}: expected a JSON object, got {_json_type(row)}")
    return value


# ---- folders of shards

# File-name prefixes read as split names (`train-00000-of-00002.parquet`, `test.jsonl`).
SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "eval")


def _data_files(folder: Path) -> list[Path]:
    """The data files directly in ``folder``, in name order (hidden files skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in BUILDERS and not p.name.startswith(".")
    )


def _split_of(path: Path) -> str | None:
    stem = path.name[: -len(path.suffix)]
    for name in SPLIT_NAMES:
        if stem == name or stem.startswith((f"{name}-", f"{name}_", f"{name}.")):
            return name
    return None


def _not_a_dataset(spec: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{spec}: folder is not a dataset written by save_to_disk (none of "
        f"{list(DISK_MARKERS)} found) nor a folder of {'/'.join(sorted(BUILDERS))} shards"
    )


def shard_files(path: Path, spec: str, split: str) -> list[Path]:
    """The shards of ``split`` in a folder (see the module's docstring)."""
    files = _data_files(path)
    folders = {d.name: d for d in sorted(path.iterdir()) if d.is_dir() and _data_files(d)}
    if not files and set(folders) == {"data"} and _split_of(_data_files(folders["data"])[0]):
        files, folders = _data_files(folders["data"]), {}  # a Hub snapshot: data/train-*.parquet
    if files and folders:
        raise DataFileError(
            f"{spec}: holds both data files ({files[0].name}) and folders of them "
            f"({', '.join(folders)}); keep one layout"
        )
    if folders:
        if split not in folders:
            raise DataFileError(f"{spec}: no split {split!r}; available splits: {sorted(folders)}")
        return _data_files(folders[split])
    if not files:
        raise _not_a_dataset(spec)
    splits = {f: _split_of(f) for f in files}
    if not any(splits.values()):
        return files  # one dataset in shards (data-00000-of-00003.jsonl)
    unnamed = [f.name for f, s in splits.items() if s is None]
    if unnamed:
        raise DataFileError(
            f"{spec}: {unnamed[0]}: no split in its name, while other files have one "
            f"({', '.join(sorted({s for s in splits.values() if s}))}); name every file "
            "<split>-*.<ext>"
        )
    chosen = [f for f, s in splits.items() if s == split]
    if not chosen:
        available = sorted({s for s in splits.values() if s})
        raise DataFileError(f"{spec}: no split {split!r}; available splits: {available}")
    return chosen


def _load_shards(path: Path, spec: str, split: str, prefer: str | None) -> Dataset:
    files = shard_files(path, spec, split)
    kinds = sorted({f.suffix.lower() for f in files})
    if len(kinds) > 1:
        raise DataFileError(f"{spec}: mixes {' and '.join(kinds)} shards; use one file type")
    parts = [_load_shard(f, str(Path(spec) / f.relative_to(path)), prefer) for f in files]
    # datasets would fill a column one shard lacks with None: a shard of another format would
    # then fail validation under the folder's name, far from its cause.
    for f, part in zip(files[1:], parts[1:], strict=True):
        if set(part.column_names) != set(parts[0].column_names):
            raise _shard_mismatch(spec, files[0], parts[0], f, part)
    try:
        return concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    except Exception as err:  # datasets: column types that cannot be aligned
        raise DataFileError(f"{spec}: cannot join the shards ({root_cause(err)})") from None


def _load_shard(path: Path, spec: str, prefer: str | None) -> Dataset:
    """One shard, rewritten and validated on its own: errors name the shard and its row."""
    rows = adapt_dataset(_load_file(path, spec), spec, prefer=prefer)
    validate_rows(rows, detect_format(rows.column_names, rows[0], spec), spec)
    return rows


def _shard_mismatch(spec: str, first: Path, a: Dataset, other: Path, b: Dataset) -> DataFileError:
    return DataFileError(
        f"{spec}: {other.name}: its columns differ from {first.name}'s ({_columns(b)} vs "
        f"{_columns(a)}); every shard needs the same ones"
    )


def _columns(part: Dataset) -> str:
    return ", ".join(sorted(part.column_names))


# ---- save_to_disk folders


def _load_folder(path: Path, spec: str, split: str, prefer: str | None = None) -> Dataset:
    if not any((path / marker).exists() for marker in DISK_MARKERS):
        return _load_shards(path, spec, split, prefer)
    if (path / "dataset_dict.json").exists():
        path = path / _pick_split(path, spec, split)
    _check_disk_rows(path, spec)
    try:
        return load_from_disk(str(path))
    except Exception as err:  # arrow: ArrowInvalid, OSError; json: JSONDecodeError
        raise DataFileError(
            f"{spec}: cannot read the save_to_disk folder ({root_cause(err)})"
        ) from err


def _read_json(path: Path, spec: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataFileError(f"{spec}: {path.name} is unreadable ({root_cause(err)})") from None


def _pick_split(path: Path, spec: str, split: str) -> str:
    """The split's subfolder of a DatasetDict folder, chosen before anything loads."""
    splits = _read_json(path / "dataset_dict.json", spec).get("splits", [])
    if split not in splits:
        raise DataFileError(f"{spec}: no split {split!r}; available splits: {sorted(splits)}")
    return split


def _check_disk_rows(path: Path, spec: str) -> None:
    # A Dataset with no rows is saved without any arrow file, which load_from_disk cannot read.
    state = path / "state.json"
    if state.exists() and not _read_json(state, spec).get("_data_files", [None]):
        raise DataFileError(f"{spec}: the dataset holds no rows")


# ---- rows given in memory


def is_in_memory(value: Any) -> bool:
    """Rows given as Python objects (a list or tuple of dicts, a `Dataset`), not named by a
    string."""
    return isinstance(value, list | tuple | Dataset)


def table_in_memory(rows: Any, key: str) -> tuple[Dataset, ValidatedFormat]:
    """Rows given in memory, rewritten when in a public layout and validated (errors name `key`
    and "row N of the given dataset"), as a `Dataset`, with their format."""
    if isinstance(rows, tuple):
        rows = list(rows)
    if isinstance(rows, Dataset):
        rows = adapt_dataset(rows, key, IN_MEMORY)
    else:
        rows = adapt_list(rows, key, IN_MEMORY)
    checked = check_in_memory(rows, key)
    return (rows if isinstance(rows, Dataset) else _as_table(rows, key)), checked


def store_dataset(dataset: Dataset, root: Path) -> str:
    """Store `dataset` under `root` in a folder named by its content, once; returns the folder."""
    folder = Path(root) / _digest(dataset)
    if not (folder / "state.json").is_file():
        _save_once(dataset, folder)
    return str(folder)


def _as_table(rows: list[dict[str, Any]], key: str) -> Dataset:
    try:
        return Dataset.from_list(rows)
    except Exception as err:  # pyarrow: a column whose values mix types (ArrowInvalid, ...)
        raise DataFileError(
            f"{key}: {IN_MEMORY} cannot be stored as a table ({root_cause(err)}); give every "
            "row's fields the same types"
        ) from None


def _digest(dataset: Dataset) -> str:
    """A digest of the rows' values and column types, read a batch at a time."""
    h = hashlib.blake2b(str(dataset.features).encode(), digest_size=16)
    for batch in dataset.with_format(None).iter(batch_size=1024):
        h.update(json.dumps(batch, sort_keys=True, default=str).encode())
    return h.hexdigest()


@contextmanager
def _quiet() -> Iterator[None]:
    """No `datasets` progress bar: one per save or rewrite would bury the training log."""
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not quiet:
            enable_progress_bars()


def _save_once(dataset: Dataset, folder: Path) -> None:
    """Write to a private folder, then rename it into place: a kill never leaves a half-written
    folder under the content's name, and two writers of the same rows keep the first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet():
        dataset.save_to_disk(str(tmp))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process stored the same rows first
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise
