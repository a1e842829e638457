"""Load a dataset from one string: a local file, a `save_to_disk` folder, or a Hub id.

Local paths are tried first so that a typo in a file name gives a file error, not a Hub lookup.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

# datasets' packaged builder for each local file extension.
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Files `save_to_disk` writes: a DatasetDict folder has the first, a Dataset folder the others.
DISK_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


def _pick_split(data: Dataset | DatasetDict, spec: str, split: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if split not in data:
        raise KeyError(f"{spec}: no split {split!r}; available splits: {sorted(data)}")
    return data[split]


def _load_file(path: Path, spec: str) -> Dataset:
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"{spec}: unsupported file extension {path.suffix!r}; "
            f"expected one of {sorted(BUILDERS)} or a folder written by save_to_disk"
        )
    # A local file is one split whatever its name; load_dataset calls it "train".
    return load_dataset(builder, data_files=str(path), split="train")


def _load_folder(path: Path, spec: str, split: str) -> Dataset:
    if not any((path / marker).exists() for marker in DISK_MARKERS):
        raise FileNotFoundError(
            f"{spec}: folder is not a dataset written by save_to_disk "
            f"(none of {list(DISK_MARKERS)} found)"
        )
    return _pick_split(load_from_disk(str(path)), spec, split)


def _looks_local(spec: str) -> bool:
    """A spec that can only mean a local path (a Hub id is `name` or `owner/name`)."""
    return (
        spec.startswith((".", "/", "~"))
        or Path(spec).suffix.lower() in BUILDERS
        or spec.count("/") > 1
        or "\\" in spec
    )


def load_rows(spec: str, split: str = "train") -> Dataset:
    """Rows from `spec`: a `.jsonl`/`.json`/`.parquet`/`.csv` file, a `save_to_disk` folder
    (a `DatasetDict` gives its `split`), or else a Hugging Face Hub dataset id.

    Raises FileNotFoundError naming `spec` when it is neither a local path nor loadable from the
    Hub (offline, missing), ValueError for an unknown file extension, KeyError for a missing split.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_file(path, spec)
    if path.is_dir():
        return _load_folder(path, spec, split)
    if _looks_local(spec):
        raise FileNotFoundError(f"{spec}: no such file or folder")
    try:
        data = load_dataset(spec, split=split)
    except Exception as err:  # datasets raises many types for offline / missing repos
        raise FileNotFoundError(
            f"{spec}: not a local file or folder, and loading it as a Hub dataset failed: "
            f"{type(err).__name__}: {err}"
        ) from err
    return _pick_split(data, spec, split)
