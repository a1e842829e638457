"""Step cost of offline IQLearn vs SFT, and of our SFT vs TRL's SFTTrainer, on the same batch;
with `--suite ava`, of AVA-p and the Preference Transformer vs a Bradley–Terry RM step.

Prints, per model, the median forward+backward+AdamW step time and the peak memory of each
variant, and their ratios to the suite's baseline (our SFT; the BT RM) measured in the same run.
Memory: on CUDA the peak allocated bytes; on CPU the growth of the process's peak RSS over the
steps, measured in a fresh subprocess per variant (so one variant's allocator cache cannot hide
another's peak).

    python benchmarks/step_cost.py [--steps 20] [--batch 8] [--seq 128] [--suite ava]

In the AVA suite the batch is `batch` preference pairs (the rows above as chosen, the same rows
rolled by one as rejected), so every variant sees 2·batch sequences per step.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

MODELS = {
    "tiny (vocab 64)": dict(
        vocab_size=64,
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
    ),
    "32k vocab": dict(
        vocab_size=32000,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=2,
        num_attention_heads=4,
    ),
}
SUITES = {
    "iqlearn": (("sft", "iqlearn", "trl_sft", "hf_loss"), "sft"),
    "ava": (("bt_rm", "ava_p", "ava_p_norwt", "pt_rm"), "bt_rm"),
}


def build(model_name: str, batch: int, seq: int, seed: int = 0, classifier: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = dict(MODELS[model_name])
    cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    torch.manual_seed(seed)
    config = LlamaConfig(**cfg, pad_token_id=0, eos_token_id=2, bos_token_id=1, num_labels=1)
    model = (LlamaForSequenceClassification if classifier else LlamaForCausalLM)(config)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, cfg["vocab_size"], (batch, seq), generator=g)
    lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
    attention = (torch.arange(seq)[None] < lengths[:, None]).long()
    ids = ids.masked_fill(attention == 0, 0)
    ids[torch.arange(batch), lengths - 1] = 2  # every response ends with EOS
    completion = attention.clone()
    completion[:, : seq // 4] = 0  # the first quarter is the prompt
    batch_ = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}
    return model, batch_


def _tokenizer():
    """Any tokenizer will do: the batch is already token ids; TRL only asks for pad/eos ids."""
    from irlalign.synthetic.config import SyntheticConfig
    from irlalign.synthetic.language import build_task
    from irlalign.synthetic.model import build_tokenizer

    return build_tokenizer(build_task(SyntheticConfig()))


def pairs(batch: dict) -> dict:
    """A preference batch: `batch` as chosen, its rows rolled by one as rejected."""
    out = {f"chosen_{k}": v for k, v in batch.items()}
    out.update({f"rejected_{k}": v.roll(1, dims=0) for k, v in batch.items()})
    return out


def make_ava_step(variant: str, model, batch, args):
    from irlalign.trainers.ava import AVAConfig, AVATrainer
    from irlalign.trainers.preference_transformer import PreferenceTransformerTrainer
    from irlalign.trainers.reward import RewardTrainer

    cls = {"bt_rm": RewardTrainer, "pt_rm": PreferenceTransformerTrainer}.get(variant, AVATrainer)
    extra = {}
    if variant.startswith("ava_p"):
        extra["method"] = AVAConfig(rwt="none" if variant == "ava_p_norwt" else "attn_full")
    trainer = cls(model=model, args=args, processing_class=None, **extra)
    inputs = pairs(batch)
    return lambda: trainer.compute_loss(trainer.model, inputs)


def make_step(variant: str, model, batch):
    """A closure computing the variant's loss on `batch` (forward only; caller does backward)."""
    from transformers import TrainingArguments

    from irlalign.data.collate import with_labels
    from irlalign.trainers.iqlearn import IQLearnConfig, IQLearnTrainer
    from irlalign.trainers.sft import SFTTrainer

    out = tempfile.mkdtemp()
    args = TrainingArguments(
        output_dir=out,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        label_names=[],
    )
    if variant in SUITES["ava"][0]:
        return make_ava_step(variant, model, batch, args)
    inputs = with_labels(dict(batch))
    if variant == "hf_loss":
        return lambda: (
            model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                labels=inputs["labels"],
            ).loss
        )
    if variant == "trl_sft":
        from trl import SFTConfig
        from trl import SFTTrainer as TRLSFTTrainer

        trl_args = SFTConfig(
            output_dir=out, report_to="none", use_cpu=args.use_cpu, completion_only_loss=True
        )
        from datasets import Dataset

        dummy = Dataset.from_dict({"input_ids": [[1, 2]], "completion_mask": [[0, 1]]})
        trainer = TRLSFTTrainer(
            model=model, args=trl_args, train_dataset=dummy, processing_class=_tokenizer()
        )
        trl_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "labels")}
        return lambda: trainer.compute_loss(model, dict(trl_inputs))
    cls = SFTTrainer if variant == "sft" else IQLearnTrainer
    extra = {"method": IQLearnConfig(lam=0.1)} if variant == "iqlearn" else {}
    trainer = cls(model=model, args=args, processing_class=None, **extra)
    if variant == "iqlearn":
        model.config.eos_token_id = 2
    return lambda: trainer.compute_loss(model, inputs)


def measure(model_name: str, variant: str, steps: int, batch: int, seq: int) -> dict:
    model, data = build(model_name, batch, seq, classifier=variant == "bt_rm")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    data = {k: v.to(device) for k, v in data.items()}
    step = make_step(variant, model, data)  # may attach heads: build the optimiser after it
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    times = []
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = step()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t)
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"median_ms": 1000 * statistics.median(times), "peak_mib": peak}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--suite", choices=sorted(SUITES), default="iqlearn")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    variants, baseline = SUITES[a.suite]
    if a.one:
        print(json.dumps(measure(a.one[0], a.one[1], a.steps, a.batch, a.seq)))
        return
    print(
        f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads "
        f"{torch.get_num_threads()}, batch {a.batch} x {a.seq} tokens, {a.steps} steps"
    )
    print(f"| model | variant | step ms | ×{baseline} time | peak MiB | ×{baseline} memory |")
    print("|---|---|---:|---:|---:|---:|")
    for name in MODELS:
        rows = {}
        for variant in variants:
            cmd = [
                sys.executable,
                __file__,
                "--steps",
                str(a.steps),
                "--batch",
                str(a.batch),
                "--seq",
                str(a.seq),
                "--one",
                name,
                variant,
            ]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                print(f"| {name} | {variant} | failed: {res.stderr.strip().splitlines()[-1]} |")
                continue
            rows[variant] = json.loads(res.stdout.strip().splitlines()[-1])
        base = rows.get(baseline)
        for variant, r in rows.items():
            t_ratio = r["median_ms"] / base["median_ms"] if base else float("nan")
            m_ratio = (
                r["peak_mib"] / base["peak_mib"] if base and base["peak_mib"] > 0 else float("nan")
            )
            print(
                f"| {name} | {variant} | {r['median_ms']:.1f} | {t_ratio:.3f} | "
                f"{r['peak_mib']:.1f} | {m_ratio:.3f} |"
            )


if __name__ == "__main__":
    main()
