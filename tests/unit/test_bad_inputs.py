"""A corpus of bad inputs. Each case ends in one clear error (a ValueError or FileNotFoundError
whose first line names the file or config key, and the row and field where there is one), or in
the documented acceptance, with a `DataWarning` where one is documented; any other exception
fails the case with its traceback.

Data cases cross the three formats with the five file types and the defect classes; model,
config and command-line cases follow. The count of cases per outcome is printed at the end.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from irlalign.data.formats import DataWarning, check_dataset
from irlalign.data.loading import load_rows

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES: Counter[str] = Counter()


@dataclass(frozen=True)
class Expect:
    outcome: str  # "error", "accept" or "warn"
    needles: tuple[str, ...] = ()  # in the error's first line, or in the warning


def error(*needles: str) -> Expect:
    return Expect("error", needles)


def warn(*needles: str) -> Expect:
    return Expect("warn", needles)


ACCEPT = Expect("accept")


@pytest.fixture(scope="module", autouse=True)
def corpus_summary(request):
    yield
    total = sum(OUTCOMES.values())
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(OUTCOMES.items()))
    line = f"bad-input corpus: {total} cases ({counts})"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")


def _record(part: str, expect: Expect, message: str, got: str) -> None:
    assert got == expect.outcome, f"expected {expect.outcome}, got {got}: {message}"
    first = message.splitlines()[0] if message else ""
    for needle in expect.needles:
        assert needle in first, f"{needle!r} not in {first!r}"
    OUTCOMES[f"{part} {got}"] += 1


def _attempt(action: Callable[[], object]) -> tuple[str, str]:
    """("error", message) for the two clean error types, else ("warn" | "accept", warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            action()
        except (ValueError, FileNotFoundError) as err:
            return "error", str(err)
    data = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    return ("warn", data[0]) if data else ("accept", "")


# ---- the data corpus


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# Row 1 of every format holds the word "tiny": the non-UTF-8 defect replaces it.
ROWS = {
    "pc": [
        {"prompt": "<bos> food cat <sep>", "completion": "big <eos>"},
        {"prompt": "<bos> sport dog <sep>", "completion": "tiny <eos>"},
        {"prompt": "<bos> music <sep>", "completion": "glad <eos>"},
    ],
    "pref": [
        {"prompt": "<bos> food <sep>", "chosen": "big <eos>", "rejected": "small <eos>"},
        {"prompt": "<bos> sport <sep>", "chosen": "tiny <eos>", "rejected": "fast <eos>"},
        {"prompt": "<bos> music <sep>", "chosen": "glad <eos>", "rejected": "end <eos>"},
    ],
    "msg": [
        {"messages": [user("food cat"), assistant("big")]},
        {"messages": [user("sport dog"), assistant("tiny")]},
        {"messages": [user("music"), assistant("glad")]},
    ],
}
# The field a row defect hits, and where the message names it.
TARGET = {"pc": "completion", "pref": "chosen", "msg": "messages"}
FIELD = {"pc": "'completion'", "pref": "'chosen'", "msg": "'messages[1].content'"}
FORMATS = tuple(ROWS)
TYPES = ("jsonl", "json", "csv", "parquet", "disk")
EXT = {"jsonl": ".jsonl", "json": ".json", "csv": ".csv", "parquet": ".parquet", "disk": ""}


def _csv_text(rows: list[dict], quoting: int = csv.QUOTE_MINIMAL) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=quoting, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return out.getvalue()


def _text(rows: list[dict], ftype: str) -> str:
    if ftype == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    if ftype == "json":
        return json.dumps(rows)
    return _csv_text(rows)


def write(tmp: Path, rows: list[dict], ftype: str) -> str:
    path = tmp / f"train{EXT[ftype]}"
    if ftype in ("jsonl", "json", "csv"):
        path.write_text(_text(rows, ftype), encoding="utf-8")
    elif ftype == "parquet":
        Dataset.from_list(rows).to_parquet(str(path))
    else:
        Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


def write_bytes(tmp: Path, data: bytes, ftype: str) -> str:
    path = tmp / f"train{EXT[ftype]}"
    path.write_bytes(data)
    return str(path)


def _zero_rows(tmp: Path, fmt: str, ftype: str) -> str:
    empty = Dataset.from_dict({k: [] for k in ROWS[fmt][0]})
    text = {"jsonl": "\n\n", "json": "[]", "csv": ",".join(ROWS[fmt][0]) + "\n"}
    if ftype in text:
        return write_bytes(tmp, text[ftype].encode(), ftype)
    path = tmp / f"train{EXT[ftype]}"
    if ftype == "parquet":
        empty.to_parquet(str(path))
    else:
        empty.save_to_disk(str(path))
    return str(path)


def _halve_arrow(folder: Path) -> None:
    arrow = next(folder.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])


def _mutate(fmt: str, index: int, value) -> list[dict]:
    """ROWS[fmt] with row `index`'s defect field set to `value` (msg: the assistant's text)."""
    rows = json.loads(json.dumps(ROWS[fmt]))
    if fmt == "msg":
        rows[index]["messages"][1]["content"] = value
    else:
        rows[index][TARGET[fmt]] = value
    return rows


# Each defect: (fmt, ftype, tmp) -> (spec, split, Expect), registered with the formats and file
# types it applies to.
Case = tuple[str, str, Expect]
DEFECTS: list[tuple[Callable, tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]] = []
NO_CSV_MESSAGES = (("msg", "csv"),)  # a CSV cell cannot hold a message list: see `valid`


def defect(formats=FORMATS, types=TYPES, skip=()):
    def register(fn):
        DEFECTS.append((fn, formats, types, skip))
        return fn

    return register


@defect()
def valid(fmt, ftype, tmp) -> Case:
    if fmt == "msg" and ftype == "csv":
        expect = error("row 0", "field 'messages'", "store conversations as .jsonl")
        return write(tmp, ROWS[fmt], ftype), "train", expect
    return write(tmp, ROWS[fmt], ftype), "train", ACCEPT


@defect(types=("jsonl", "json", "csv", "parquet"))
def empty_file(fmt, ftype, tmp) -> Case:
    return write_bytes(tmp, b"", ftype), "train", error("the file is empty")


@defect()
def no_rows(fmt, ftype, tmp) -> Case:
    return _zero_rows(tmp, fmt, ftype), "train", error("no rows")


@defect()
def truncated(fmt, ftype, tmp) -> Case:
    if ftype in ("jsonl", "json"):
        text = _text(ROWS[fmt], ftype).rstrip("\n")
        spec = write_bytes(tmp, text[:-6].encode(), ftype)
        where = "line 3 (row 2)" if ftype == "jsonl" else "line 1"
        return spec, "train", error(where, "not valid JSON", "cut short")
    if ftype == "csv":  # every field quoted: the cut lands inside one of the last row's
        text = _csv_text(ROWS[fmt], csv.QUOTE_ALL)
        spec = write_bytes(tmp, text[: text.rindex("glad") + 2].encode(), ftype)
        return spec, "train", error("row 2", "quoted field never closes", "cut short")
    spec = write(tmp, ROWS[fmt], ftype)
    if ftype == "parquet":
        data = Path(spec).read_bytes()
        Path(spec).write_bytes(data[: len(data) // 2])
        return spec, "train", error("not a readable parquet file")
    _halve_arrow(Path(spec))
    return spec, "train", error("cannot read the save_to_disk folder")


@defect(types=("jsonl", "json", "csv"))
def non_utf8(fmt, ftype, tmp) -> Case:
    data = _text(ROWS[fmt], ftype).encode().replace(b"tiny", b"t\xe9ny")
    line = {"jsonl": "line 2", "json": "line 1", "csv": "line 3"}[ftype]
    return write_bytes(tmp, data, ftype), "train", error(line, "not UTF-8")


@defect()
def missing_column(fmt, ftype, tmp) -> Case:
    name = TARGET[fmt]
    rows = [{(k + "_x" if k == name else k): v for k, v in r.items()} for r in ROWS[fmt]]
    return write(tmp, rows, ftype), "train", error("cannot tell the format")


@defect(formats=("pref",))
def missing_prompt(fmt, ftype, tmp) -> Case:
    rows = [{k: v for k, v in r.items() if k != "prompt"} for r in ROWS[fmt]]
    return write(tmp, rows, ftype), "train", error("field 'prompt'", "explicit 'prompt'")


@defect(skip=NO_CSV_MESSAGES)
def missing_split(fmt, ftype, tmp) -> Case:
    if ftype != "disk":  # a single file is one split, whatever data.split says
        return write(tmp, ROWS[fmt], ftype), "validation", ACCEPT
    path = tmp / "saved"
    ds = Dataset.from_list(ROWS[fmt])
    DatasetDict({"train": ds, "test": ds}).save_to_disk(str(path))
    return str(path), "validation", error("no split 'validation'", "['test', 'train']")


@defect(skip=NO_CSV_MESSAGES)
def null_field(fmt, ftype, tmp) -> Case:
    rows = json.loads(json.dumps(ROWS[fmt]))
    rows[1][TARGET[fmt]] = None
    return write(tmp, rows, ftype), "train", error("row 1", f"field '{TARGET[fmt]}'", "got None")


@defect(types=("jsonl", "json"))
def missing_key_in_row(fmt, ftype, tmp) -> Case:
    rows = json.loads(json.dumps(ROWS[fmt]))
    del rows[1][TARGET[fmt]]
    return write(tmp, rows, ftype), "train", error("row 1", f"field '{TARGET[fmt]}'")


@defect(skip=NO_CSV_MESSAGES)
def wrong_type(fmt, ftype, tmp) -> Case:
    if ftype == "csv":  # CSV cells are text: 5 is the string "5", a valid response
        return write(tmp, _mutate(fmt, 1, 5), ftype), "train", ACCEPT
    if ftype in ("parquet", "disk"):  # a column has one type: a one-row file, its row 0 bad
        if fmt == "msg":  # a struct field has one type too: turns as plain strings
            rows, expect = [{"messages": ["food cat", "big"]}], error("row 0", "message dict")
        else:
            rows, expect = _mutate(fmt, 0, 5)[:1], error("row 0", FIELD[fmt], "int")
        return write(tmp, rows, ftype), "train", expect
    return write(tmp, _mutate(fmt, 1, 5), ftype), "train", error("row 1", FIELD[fmt], "int")


@defect(skip=NO_CSV_MESSAGES)
def empty_string(fmt, ftype, tmp) -> Case:
    # CSV reads an empty cell as a missing value: the row and field are still named.
    return write(tmp, _mutate(fmt, 1, ""), ftype), "train", error("row 1", FIELD[fmt])


@defect(skip=NO_CSV_MESSAGES)
def whitespace_string(fmt, ftype, tmp) -> Case:
    expect = error("row 1", FIELD[fmt], "only whitespace")
    return write(tmp, _mutate(fmt, 1, "   "), ftype), "train", expect


@defect(skip=NO_CSV_MESSAGES)
def whitespace_prompt(fmt, ftype, tmp) -> Case:
    rows = json.loads(json.dumps(ROWS[fmt]))
    if fmt == "msg":
        rows[1]["messages"][0]["content"] = " \t "
        field = "'messages[0].content'"
    else:
        rows[1]["prompt"] = " \t "
        field = "'prompt'"
    return write(tmp, rows, ftype), "train", error("row 1", field, "only whitespace")


@defect(skip=NO_CSV_MESSAGES)
def duplicate_rows(fmt, ftype, tmp) -> Case:
    rows = [*ROWS[fmt], ROWS[fmt][0]]
    expect = warn("1 of 4 rows repeat an earlier row", "row 3 repeats row 0")
    return write(tmp, rows, ftype), "train", expect


@defect(formats=("pref",))
def identical_pair(fmt, ftype, tmp) -> Case:
    rows = json.loads(json.dumps(ROWS[fmt]))
    rows[1]["rejected"] = rows[1]["chosen"]
    return write(tmp, rows, ftype), "train", error("row 1", "field 'rejected'", "identical")


@defect(formats=("msg",), skip=NO_CSV_MESSAGES)
def bad_role(fmt, ftype, tmp) -> Case:
    rows = json.loads(json.dumps(ROWS[fmt]))
    rows[1]["messages"][1]["role"] = "bot"
    return write(tmp, rows, ftype), "train", error("row 1", "'messages[1].role'", "'bot'")


@defect(formats=("msg",), skip=NO_CSV_MESSAGES)
def ends_with_user(fmt, ftype, tmp) -> Case:
    rows = json.loads(json.dumps(ROWS[fmt]))
    rows[1]["messages"].append(user("more"))
    expect = error("row 1", "'messages[2].role'", "assistant turn")
    return write(tmp, rows, ftype), "train", expect


@defect(skip=NO_CSV_MESSAGES)
def extra_column(fmt, ftype, tmp) -> Case:
    rows = [{**r, "score": 1.5} for r in ROWS[fmt]]
    return write(tmp, rows, ftype), "train", ACCEPT


@defect(types=("csv",))
def csv_short_last_row(fmt, ftype, tmp) -> Case:
    text = _csv_text(ROWS[fmt]).rstrip("\n")
    cut = text[: text.rindex(",")]  # the last row loses its last field
    return write_bytes(tmp, cut.encode(), ftype), "train", error("row 2", "field", "cut short")


@defect(types=("csv",))
def csv_long_row(fmt, ftype, tmp) -> Case:
    lines = _csv_text(ROWS[fmt]).splitlines()
    lines[2] += ",extra"
    data = ("\n".join(lines) + "\n").encode()
    return write_bytes(tmp, data, ftype), "train", error("row 1 (line 3)", "but the header has")


@defect(formats=("pc", "pref"), types=("csv",))
def csv_cut_in_last_field(fmt, ftype, tmp) -> Case:
    text = _csv_text(ROWS[fmt]).rstrip("\n")
    return write_bytes(tmp, text[:-2].encode(), ftype), "train", warn("row 2", "no line ending")


@defect(types=("jsonl", "json"))
def not_an_object(fmt, ftype, tmp) -> Case:
    rows = [ROWS[fmt][0], [1, 2], ROWS[fmt][2]]
    where = "line 2 (row 1)" if ftype == "jsonl" else "row 1"
    return write(tmp, rows, ftype), "train", error(where, "expected a JSON object")


@defect(types=("jsonl", "csv"))
def blank_lines_and_bom(fmt, ftype, tmp) -> Case:
    text = _text(ROWS[fmt], ftype)
    if ftype == "jsonl":
        text = text.replace("\n", "\n\n", 1)
    expect = error("row 0", "store conversations") if fmt == "msg" and ftype == "csv" else ACCEPT
    return write_bytes(tmp, b"\xef\xbb\xbf" + text.encode(), ftype), "train", expect


@defect(types=("json",))
def top_level_object(fmt, ftype, tmp) -> Case:
    data = json.dumps({"rows": ROWS[fmt]}).encode()
    return write_bytes(tmp, data, ftype), "train", error("train.json")


@defect(types=("disk",))
def disk_bad_state(fmt, ftype, tmp) -> Case:
    spec = write(tmp, ROWS[fmt], ftype)
    (Path(spec) / "state.json").write_text("{")
    return spec, "train", error("state.json is unreadable")


@defect(types=("disk",))
def not_saved_with_save_to_disk(fmt, ftype, tmp) -> Case:
    (tmp / "raw").mkdir()
    (tmp / "raw" / "rows.txt").write_text("a\n")
    return str(tmp / "raw"), "train", error("not a dataset written by save_to_disk")


@defect()
def missing_path(fmt, ftype, tmp) -> Case:
    return str(tmp / f"trian{EXT[ftype]}"), "train", error("no such file or folder")


@defect(types=("jsonl",))
def wrong_extension(fmt, ftype, tmp) -> Case:
    path = tmp / "train.txt"
    path.write_text(_text(ROWS[fmt], "jsonl"))
    return str(path), "train", error("unsupported file extension '.txt'")


DATA_CASES = [
    pytest.param(fn, fmt, ftype, id=f"{fmt}-{ftype}-{fn.__name__}")
    for fn, formats, types, skip in DEFECTS
    for fmt in formats
    for ftype in types
    if (fmt, ftype) not in skip
]


@pytest.mark.parametrize(("defect", "fmt", "ftype"), DATA_CASES)
def test_data_corpus(defect, fmt, ftype, tmp_path):
    spec, split, expect = defect(fmt, ftype, tmp_path)

    def load_and_check():
        check_dataset(load_rows(spec, split), spec)

    got, message = _attempt(load_and_check)
    if got == "error":
        first = message.splitlines()[0]
        assert Path(spec).name in first, f"the file is not named: {first!r}"
        assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    _record("data", expect, message, got)


# ---- models, tokenizers and the files a config names


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny causal LM with the synthetic word-level tokenizer (no unknown token)."""
    from irlalign.synthetic.config import SyntheticConfig
    from irlalign.synthetic.language import build_task
    from irlalign.synthetic.model import build_tokenizer, tiny_model

    config = SyntheticConfig.from_file(ROOT / "configs" / "synthetic" / "smoke.yaml")
    tok = build_tokenizer(build_task(config))
    out = tmp_path_factory.mktemp("models") / "pi_init"
    tiny_model(config, len(tok), seed=0).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _variant(model_dir: Path, tmp: Path, change: Callable[[Path], None]) -> str:
    """A copy of the model folder with one file changed."""
    folder = tmp / "variant"
    shutil.copytree(model_dir, folder)
    change(folder)
    return str(folder)


def _set_config(**values) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **values}))

    return change


def _config_text(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "config.json").write_text(text)


def _cut_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])


def _raw(model_dir: Path, tmp: Path, method: str = "sft") -> dict:
    """A valid config of `method` on the tiny model and three demonstrations."""
    raw = {
        "model": {"path": str(model_dir)},
        "data": {"train": write(tmp, ROWS["pc"], "jsonl"), "max_length": 32},
        "training": {"output_dir": str(tmp / "run"), "max_steps": 1, "use_cpu": True},
    }
    if method in ("rloo", "ppo"):
        raw["method"] = {"reward_model": "gold"}
    return raw


def _preflight(method: str, edit: Callable[[dict, Path, Path], None]) -> Callable:
    """A case that resolves a valid config changed by `edit` and checks the files it names."""

    def action(model_dir: Path, tmp: Path) -> Callable[[], object]:
        from irlalign.methods import resolve, spec_of
        from irlalign.preflight import check_inputs

        raw = _raw(model_dir, tmp, method)
        edit(raw, model_dir, tmp)
        return lambda: check_inputs(resolve(method, raw), spec_of(method).runner_kind)

    return action


def _model_path(make: Callable[[Path, Path], str]) -> Callable:
    def edit(raw, model_dir, tmp):
        raw["model"]["path"] = make(model_dir, tmp)

    return edit


def _set(section: str, key: str, make: Callable[[Path, Path], object]) -> Callable:
    def edit(raw, model_dir, tmp):
        raw.setdefault(section, {})[key] = make(model_dir, tmp)

    return edit


def _load_tok(path):
    from irlalign.modeling.load import load_tokenizer

    return load_tokenizer(str(path))


def _load_model(path):
    from irlalign.config import ModelOptions
    from irlalign.modeling.load import load_model

    return load_model(ModelOptions(str(path)))


def _loading(fn: Callable[[Path, Path], object]) -> Callable:
    """A case that loads or tokenises something built from the tiny model."""
    return lambda model_dir, tmp: lambda: fn(model_dir, tmp)


def _tokenize(tmp: Path, rows: list[dict], tok) -> object:
    from irlalign.data.tokenize import tokenize_dataset

    spec = write(tmp, rows, "jsonl")
    return tokenize_dataset(load_rows(spec), tok, source=spec)


def _oov_word_in_sft(model_dir, tmp):
    return _tokenize(tmp, _mutate("pc", 1, "tiny zebra <eos>"), _load_tok(model_dir))


def _no_chat_template(model_dir, tmp):
    tok = _load_tok(model_dir)
    tok.chat_template = None
    return _tokenize(tmp, ROWS["msg"], tok)


def _oov_word_in_rl_prompt(model_dir, tmp):
    from irlalign.generation.sampling import HFSampler

    sampler = HFSampler(_load_model(model_dir), _load_tok(model_dir))
    return sampler.sample(["<bos> food <sep>", "<bos> zebra <sep>"])


def _whitespace_rl_prompt(model_dir, tmp):
    from irlalign.loops.setup import load_prompts

    rows = json.loads(json.dumps(ROWS["pc"]))
    rows[1]["prompt"] = "  "
    return load_prompts(write(tmp, rows, "jsonl"), "train", _load_tok(model_dir))


def _good_model(model_dir, tmp):
    return _load_tok(model_dir), _load_model(model_dir)


def _default_max_length(raw, model_dir, tmp):
    del raw["data"]["max_length"]  # the default, 512, exceeds the tiny model's 64 positions


def _rl_with_reward_folder(raw, model_dir, tmp):
    raw["data"]["max_length"] = 512  # beyond the model's 64 positions, but never used
    raw["method"]["reward_model"] = str(model_dir)


def _empty_folder(model_dir, tmp):
    (tmp / "notask").mkdir()
    return str(tmp / "notask")


MODEL_CASES = {
    "good model and tokenizer load": (_loading(_good_model), ACCEPT),
    "mistyped local model folder": (
        _preflight("sft", _model_path(lambda d, t: str(d.parent / "pi_inti"))),
        error("model.path", "did you mean"),
    ),
    "plain org/name that is not local": (
        _preflight("sft", _model_path(lambda d, t: "someorg/pi_init")),
        error("model.path", "hub:someorg/pi_init"),
    ),
    "hub prefix without a name": (
        _preflight("sft", _model_path(lambda d, t: "hub:")),
        error("model.path", "expected hub:"),
    ),
    "hub model: checked when it loads": (
        _preflight("sft", _model_path(lambda d, t: "hub:someorg/model")),
        ACCEPT,
    ),
    "config.json not JSON": (
        _preflight("sft", _model_path(lambda d, t: _variant(d, t, _config_text("{")))),
        error("model.path", "config.json", "JSON"),
    ),
    "config.json a list": (
        _preflight("sft", _model_path(lambda d, t: _variant(d, t, _config_text("[1]")))),
        error("model.path", "JSON object"),
    ),
    "no config.json": (
        _preflight(
            "sft", _model_path(lambda d, t: _variant(d, t, lambda f: (f / "config.json").unlink()))
        ),
        error("model.path", "no config.json"),
    ),
    "tokenizer not loadable from a non-JSON config.json": (
        _loading(lambda d, t: _load_tok(_variant(d, t, _config_text("{")))),
        error("config.json", "not a readable JSON file"),
    ),
    "corrupt safetensors": (
        _loading(lambda d, t: _load_model(_variant(d, t, _cut_weights))),
        error("variant: cannot load the model"),
    ),
    "tokenizer ids beyond the embedding": (
        _loading(lambda d, t: _load_tok(_variant(d, t, _set_config(vocab_size=10)))),
        error("variant", "embedding has 10 rows"),
    ),
    "max_length beyond the model's positions": (
        _preflight("sft", _set("data", "max_length", lambda d, t: 100)),
        error("data.max_length", "64 positions"),
    ),
    "the default max_length is lowered to the positions": (
        _preflight("sft", _default_max_length),
        ACCEPT,
    ),
    "an online loop reads no max_length": (
        _preflight("rloo", _rl_with_reward_folder),
        ACCEPT,
    ),
    "gold reward without a synthetic task": (
        _preflight("ppo", lambda raw, d, t: None),
        error("method.reward_model", "eval.synthetic_task"),
    ),
    "reference with another vocabulary": (
        _preflight(
            "dpo",
            _set(
                "model", "reference_path", lambda d, t: _variant(d, t, _set_config(vocab_size=99))
            ),
        ),
        error("model.reference_path", "vocabulary"),
    ),
    "RL reward model folder missing": (
        _preflight("rloo", _set("method", "reward_model", lambda d, t: str(t / "rm"))),
        error("method.reward_model", "no such model folder"),
    ),
    "synthetic task missing": (
        _preflight("sft", _set("eval", "synthetic_task", lambda d, t: str(t / "tsk"))),
        error("eval.synthetic_task", "no such task folder"),
    ),
    "synthetic task without task.json": (
        _preflight("sft", _set("eval", "synthetic_task", _empty_folder)),
        error("eval.synthetic_task", "no task.json"),
    ),
    "data.train missing": (
        _preflight("sft", _set("data", "train", lambda d, t: str(t / "trian.jsonl"))),
        error("data.train", "no such file or folder", "did you mean"),
    ),
    "data.eval missing": (
        _preflight("sft", _set("data", "eval", lambda d, t: "held/out")),
        error("data.eval", "hub:held/out"),
    ),
    "hub dataset: checked when it loads": (
        _preflight("sft", _set("data", "train", lambda d, t: "hub:someorg/data")),
        ACCEPT,
    ),
    "word outside a vocabulary without an unknown token": (
        _loading(_oov_word_in_sft),
        error("row 1", "field 'completion'", "'zebra' is not in its vocabulary"),
    ),
    "word outside the vocabulary in an RL prompt": (
        _loading(_oov_word_in_rl_prompt),
        error("prompt '<bos> zebra <sep>'", "'zebra'"),
    ),
    "whitespace-only RL prompt": (
        _loading(_whitespace_rl_prompt),
        error("row 1", "field 'prompt'", "only whitespace"),
    ),
    "conversation and no chat template": (
        _loading(_no_chat_template),
        error("row 0", "chat template"),
    ),
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_model_and_path_corpus(name, model_dir, tmp_path):
    build, expect = MODEL_CASES[name]
    got, message = _attempt(build(model_dir, tmp_path))
    if got == "error":
        assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    _record("model/paths", expect, message, got)


# ---- config sections (resolution only: no file is read)

BASE = {
    "model": {"path": "models/pi"},
    "data": {"train": "demos.jsonl"},
    "training": {"output_dir": "runs/x"},
}
LOOP_METHOD = {"reward_model": "gold"}

CONFIG_CASES = [
    ("sft", {"training": {"lerning_rate": 0.1}}, error("'training'", "did you mean learning_rate")),
    ("sft", {"training": {"learning_rate": "fast"}}, error("training.learning_rate", "number")),
    ("sft", {"training": {"max_steps": 0}}, error("training.max_steps", "or -1")),
    ("sft", {"training": {"max_steps": -3}}, error("training.max_steps", "got -3")),
    ("sft", {"training": {"max_steps": -1, "num_train_epochs": 2}}, ACCEPT),
    ("sft", {"training": {"max_steps": 2.5}}, error("training.max_steps", "an integer")),
    ("sft", {"training": {"num_train_epochs": 0}}, error("training.num_train_epochs", "> 0")),
    ("sft", {"training": {"save_steps": 0}}, error("training.save_steps", "> 0")),
    ("sft", {"training": {"logging_steps": -1}}, error("training.logging_steps", "> 0")),
    ("sft", {"training": {"per_device_train_batch_size": 0}}, error("per_device_train_batch")),
    ("sft", {"training": {"lr_scheduler_type": "cosin"}}, error("lr_scheduler_type", "one of")),
    ("sft", {"training": {"use_cpu": "yes please"}}, error("training.use_cpu", "true or false")),
    ("sft", {"training": {"report_to": ["tensorboard"]}}, ACCEPT),
    (
        "dpo",
        {"training": {"skip_nonfinite_steps": 2, "resume_from_checkpoint": True}},
        ACCEPT,
    ),
    ("sft", {"training": {"overwrite_output_dir": True}}, ACCEPT),
    ("sft", {"training": {"skip_nonfinite_steps": -1}}, error("skip_nonfinite_steps", ">= 0")),
    ("sft", {"training": {"overwrite_output_dir": "yes"}}, error("overwrite_output_dir")),
    ("sft", {"method": {"entropy": 0.1}}, error("'method'", "entropy")),
    ("sft", {"data": {"max_length": "long"}}, error("data.max_length", "an integer or null")),
    ("sft", {"data": ["demos.jsonl"]}, error("section 'data' must be a mapping")),
    ("sft", {"model": {"lora": {"rank": 4}}}, error("'model.lora'", "rank")),
    ("sft", {"model": {"dtype": "fp8"}}, error("dtype must be one of")),
    ("sft", {"model": {"trust_remote_code": "no"}}, error("model.trust_remote_code")),
    ("sft", {"model": {"path": None}}, error("model.path", "a string")),
    ("sft", {"eval": {"samples": "4"}}, error("eval.samples", "an integer")),
    ("sft", {"extra": {}}, error("unknown config section")),
    ("rloo", {"method": LOOP_METHOD, "training": {"lerning_rate": 1}}, error("learning_rate")),
    ("rloo", {"method": LOOP_METHOD, "training": {"max_steps": "x"}}, error("training.max_steps")),
    ("rloo", {"method": {**LOOP_METHOD, "k": 1.5}}, error("method.k", "an integer")),
    ("rloo", {"method": LOOP_METHOD, "training": {"max_steps": 0}}, error("max_steps")),
    ("afd", {"method": {"rm_training": {"lerning_rate": 1}}}, error("'method.rm_training'")),
    ("afd", {"method": {"sft_training": {"max_steps": -2}}}, error("method.sft_training.max")),
    ("frft", {"method": {"rl_training": {"max_steps": 0}}}, error("method.rl_training")),
    ("adversarial", {"method": {"rm_training": {"save_steps": 10}}}, ACCEPT),
]


def _merged(patch: dict) -> dict:
    raw = json.loads(json.dumps(BASE))
    for name, values in patch.items():
        both = isinstance(values, dict) and isinstance(raw.get(name), dict)
        raw[name] = {**raw[name], **values} if both else values
    return raw


def _config_id(method: str, patch: dict) -> str:
    keys = [f"{section}.{key}" for section, values in patch.items() for key in values]
    return f"{method}-{'-'.join(keys)}"


@pytest.mark.parametrize(
    ("method", "patch", "expect"), CONFIG_CASES, ids=[_config_id(m, p) for m, p, _ in CONFIG_CASES]
)
def test_config_corpus(method, patch, expect):
    from irlalign.methods import resolve

    got, message = _attempt(lambda: resolve(method, _merged(patch)))
    if got == "error":
        assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    _record("config", expect, message, got)


# ---- the command line, end to end: one `irlalign: error:` line, exit code 2


def _cli_text(text: str) -> Callable:
    """The config file holds `text` instead of the valid config."""
    return lambda raw, tmp, model_dir: text


def _cli_data(rows_text: str) -> Callable:
    def prepare(raw, tmp, model_dir):
        (tmp / "train.jsonl").write_text(rows_text)
        raw["data"]["train"] = str(tmp / "train.jsonl")

    return prepare


def _rl_whitespace_prompt(raw, tmp, model_dir) -> None:
    """RLOO against a one-label classifier folder on prompts of which one is blank."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(tmp / "rm")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp / "rm")
    raw["method"] = {"reward_model": str(tmp / "rm"), "k": 2, "prompts_per_step": 2}
    rows = json.loads(json.dumps(ROWS["pc"]))
    rows[1]["prompt"] = "  "
    raw["data"]["train"] = write(tmp, rows, "jsonl")


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


CLI_CASES = {
    "invalid YAML": ("sft", _cli_text("model: {path: x\n"), (), error("not valid YAML")),
    "config is a list": ("sft", _cli_text("- model\n"), (), error("expected a mapping")),
    "empty jsonl": ("sft", _cli_data(""), (), error("train.jsonl", "the file is empty")),
    "cut jsonl": (
        "sft",
        _cli_data(json.dumps(ROWS["pc"][0]) + '\n{"prompt": "<bos'),
        (),
        error("line 2 (row 1)", "cut short"),
    ),
    "word outside the vocabulary": (
        "sft",
        _cli_data(_lines(_mutate("pc", 1, "zebra"))),
        (),
        error("row 1", "'zebra'"),
    ),
    "unknown training key": (
        "sft",
        None,
        ("--training.lerning_rate", "0.1"),
        error("did you mean learning_rate"),
    ),
    "max_steps 0": ("sft", None, ("--training.max_steps", "0"), error("training.max_steps")),
    "mistyped model folder": (
        "sft",
        None,
        ("--model.path", "models/pi_inti"),
        error("model.path", "hub:models/pi_inti"),
    ),
    "missing synthetic task": (
        "sft",
        None,
        ("--eval.synthetic_task", "runs/tsk"),
        error("eval.synthetic_task"),
    ),
    "whitespace-only prompt in RL": (
        "rloo",
        _rl_whitespace_prompt,
        (),
        error("row 1", "field 'prompt'", "only whitespace"),
    ),
    "repeated rows train with one warning": (
        "sft",
        _cli_data(_lines([*ROWS["pc"], ROWS["pc"][0]])),
        (),
        warn("1 of 4 rows repeat"),
    ),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_command_line_corpus(name, model_dir, tmp_path, capsys):
    import yaml

    from irlalign.cli.main import main

    method, prepare, overrides, expect = CLI_CASES[name]
    raw = _raw(model_dir, tmp_path, method)
    text = prepare(raw, tmp_path, model_dir) if prepare else None
    config = tmp_path / "config.yaml"
    config.write_text(text or yaml.safe_dump(raw))
    rc = main(["train", method, "--config", str(config), *overrides])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("irlalign: error: ")]
    warned = [line for line in err.splitlines() if line.startswith("irlalign: warning: ")]
    if errors:
        got, message = "error", errors[0].removeprefix("irlalign: error: ")
        assert rc == 2 and len(errors) == 1, err
    else:
        got, message = ("warn", warned[0]) if warned else ("accept", "")
        assert rc == 0, err
    _record("command line", expect, message, got)
