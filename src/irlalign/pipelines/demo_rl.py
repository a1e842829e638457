"""Demonstrations in, aligned policy out: SFT → a dense reward from the same demonstrations →
RL (RLOO or PPO) from π_SFT against that reward, with a KL penalty to π_SFT.

The reward phase, by `reward`:
- `implicit`: an IQLearn run on the demonstrations (from π_init or π_SFT) and its implicit
  per-token reward r_t = Q(s_t, a_t) − V(s_{t+1}) (`implicit:<checkpoint>[,<reference>]`);
- `init_sft`: AfD's Init-SFT discriminator (π_SFT samples vs π_init samples, BCE, reward =
  logit), trained by AfD's own phase code;
- `log_ratio`: log π_SFT − log π_init per token, which needs no training.

Every phase writes into the run folder (`sft/`, `reward/`, `rl/`) and a rerun of the folder
reuses the phases that finished with the same configuration and inputs, as AfD does: the SFT,
IQLearn and RL phases through `run_child`, the discriminator's samples and training through
AfD's records in `reward/phases.json`, π_SFT's gold evaluation through `phases.json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from irlalign.cards import phase_folder, publish_pipeline
from irlalign.generation.sampling import SamplingConfig
from irlalign.pipelines import parts

REWARDS = ("implicit", "init_sft", "log_ratio")
RL_METHODS = ("rloo", "ppo")
IQLEARN_STARTS = ("init", "sft")
IMPLICIT_REFERENCES = ("none", "init", "sft")
# Every reward here is per token (the discriminator's sits on the last token); the rest of the
# RL phase's defaults are those every pipeline's RL phase shares (`parts.rl_phase`).
DENSE = {"reward_mode": "dense"}
GOLD_KEYS = ("normalised_score", "gold_return", "kl_ref", "kl_expert", "objective")


@dataclass
class DemoRLConfig:
    # init_sft (AfD's Init-SFT discriminator), implicit (IQLearn's implicit per-token reward) or
    # log_ratio (log π_SFT − log π_init, no training). init_sft: bounded, it matched a
    # preference-trained reward model at the RL phase's KL 0.05, where the per-token log-ratio
    # rewards collapsed the policy; those need kl_coef ≈ 0.5 (docs/methods/demo_rl.md)
    reward: str = "init_sft"
    sft_model: str | None = None  # a given π_SFT folder; otherwise SFT on the demonstrations
    sft_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    # The reward phase's TrainingArguments keywords: IQLearn's (implicit) or the discriminator's
    # (init_sft); log_ratio trains nothing and ignores them.
    reward_training: dict[str, Any] = field(default_factory=dict)
    reward_method: dict[str, Any] = field(default_factory=dict)  # IQLearnConfig fields (implicit)
    # implicit: IQLearn starts from π_init ("init", a reward learned apart from π_SFT, as the
    # IQLearn preset trains) or from π_SFT ("sft": the TD term starts where MLE ended)
    iqlearn_from: str = "init"
    # implicit: whose implicit reward is subtracted token by token: "init" (π_init: what the
    # base model already prefers is not rewarded again), "sft" or "none"
    implicit_reference: str = "init"
    samples_per_prompt: int = 1  # init_sft: samples per source and prompt (classes stay 1:1)
    heldout_fraction: float = 0.05  # init_sft: prompts held out for discriminator accuracy
    # init_sft: sampled responses (and demonstrations) are cut at the first of these markers
    turn_markers: tuple[str, ...] = ("\n\nHuman",)
    # init_sft's samples; the RL phase's response length (on a synthetic task: its horizon)
    sampling: Any = field(default_factory=lambda: SamplingConfig(top_p=0.95, max_new_tokens=128))
    rl: str = "rloo"  # or "ppo"
    # The RL phase's `method` (RLOOConfig / PPOConfig fields) and `training` (LoopArgs fields)
    # over the defaults every pipeline's RL phase shares (`irlalign.pipelines.parts.rl_phase`),
    # with dense rewards; `reward_model` is the reward phase's.
    rl_method: dict[str, Any] = field(default_factory=dict)
    rl_training: dict[str, Any] = field(default_factory=dict)  # default max_steps 100

    def __post_init__(self) -> None:
        self.sampling = SamplingConfig.coerce(self.sampling)
        self.turn_markers = tuple(self.turn_markers)
        _choice("reward", self.reward, REWARDS)
        _choice("rl", self.rl, RL_METHODS)
        _choice("iqlearn_from", self.iqlearn_from, IQLEARN_STARTS)
        _choice("implicit_reference", self.implicit_reference, IMPLICIT_REFERENCES)
        if self.samples_per_prompt < 1 or not 0 <= self.heldout_fraction < 1:
            raise ValueError(
                "method.samples_per_prompt >= 1 and 0 <= method.heldout_fraction < 1 required"
            )
        _check_phase_methods(self)


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"method.{key}: expected one of {', '.join(choices)}, got {value!r}")


def _check_phase_methods(demo: DemoRLConfig) -> None:
    """The phases' own `method` sections, checked now rather than after the phases before them
    have trained."""
    from irlalign.config import build_section
    from irlalign.loops.ppo import PPOConfig
    from irlalign.loops.rloo import RLOOConfig
    from irlalign.trainers.iqlearn import IQLearnConfig

    if "reward_model" in demo.rl_method:
        raise ValueError("method.rl_method.reward_model: set by the pipeline from method.reward")
    rl_class = RLOOConfig if demo.rl == "rloo" else PPOConfig
    build_section(rl_class, {**DENSE, **demo.rl_method}, "method.rl_method")
    build_section(IQLearnConfig, demo.reward_method, "method.reward_method")


def train_demo_rl(cfg, run_child) -> dict[str, Any]:
    """Run SFT → reward → RL; writes the phases' folders and `eval.json`; returns its content.
    ``run_child(method_name, cfg, **phase)`` runs the SFT, IQLearn and RL phases."""
    demo: DemoRLConfig = cfg.method_config
    _check_sft_model(demo.sft_model)
    run, _, tokenizer, demos = parts.open_run(cfg)
    results: dict[str, Any] = {"label": "demonstrations → dense reward → RL", "reward": demo.reward}

    # ==== 1. π_SFT: given, or SFT on the demonstrations ======================================
    sft_path = demo.sft_model
    if sft_path is None:
        out = run_child(
            "sft",
            cfg,
            folder="sft",
            model=cfg.model.path,
            data=_rows(cfg),
            training=demo.sft_training,
        )
        sft_path = _checkpoint(out)
    results["sft_model"] = str(sft_path)
    if cfg.eval.synthetic_task:
        results["sft_eval"] = _sft_eval(cfg, str(sft_path))

    # ==== 2. the dense reward from the same demonstrations ==================================
    spec, info = _reward(cfg, demo, run_child, str(sft_path), (tokenizer, demos))
    results["reward_model"] = {"kind": demo.reward, "spec": spec, **info}

    # ==== 3. RL from π_SFT against it, KL to π_SFT ===========================================
    results["rl"] = _rl(cfg, demo, run_child, spec, str(sft_path))
    results["final_checkpoint"] = results["rl"]["final_checkpoint"]
    if cfg.eval.synthetic_task:
        results["summary"] = gold_summary(results["sft_eval"], results["rl"]["synthetic"])
    run.write_eval(results)
    which = (
        f"The final policy of the demo_rl pipeline: π_SFT trained with {demo.rl.upper()} against "
        f"the {demo.reward} reward (`{spec}`): "
        f"`{phase_folder(results['final_checkpoint'], cfg.run_dir)}`. The pipeline's other "
        f"models (π_SFT, `{sft_path}`, and the reward model it trained, if any) are not pushed."
    )
    return publish_pipeline(
        cfg, results, results["final_checkpoint"], which, run.write_eval,
        results["rl"].get("synthetic"),
    )  # fmt: skip


def _check_sft_model(path: str | None) -> None:
    """A given π_SFT is checked before anything trains (the reward and RL phases read it)."""
    from irlalign.modeling.load import read_model_config
    from irlalign.paths import hub_id

    if path is None or hub_id(path) is not None:
        return
    try:
        read_model_config(path)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"method.sft_model: {err}") from None


def _rows(cfg) -> dict[str, Any]:
    """The rows every phase reads its demonstrations (and RL its prompts) from: the run's own."""
    from irlalign.pipelines.afd import _demonstration_rows

    return _demonstration_rows(cfg)


def _checkpoint(out: dict[str, Any]) -> str:
    """A phase's model as a plain causal-LM folder (a LoRA run's merged copy), which the reward
    specs and the next phases load."""
    return str(out.get("merged_checkpoint") or out["final_checkpoint"])


def _sft_eval(cfg, sft_path: str) -> dict[str, Any]:
    """π_SFT's gold evaluation (the RL phase's start), or the recorded one of the same model."""
    from irlalign.runs import PhaseLog, fingerprint
    from irlalign.synthetic.runner import eval_policy

    phases = PhaseLog(cfg.run_dir)
    key = {"sft": fingerprint(sft_path), "eval": dataclasses.asdict(cfg.eval)}
    done = phases.reusable("sft_eval", key)
    if done:
        return done["result"]
    res = eval_policy(cfg.eval.synthetic_task, sft_path, cfg.eval.samples, cfg.eval.seed)
    phases.finish("sft_eval", key, res)
    return res


def _reward(cfg, demo: DemoRLConfig, run_child, sft_path: str, data) -> tuple[str, dict]:
    """(reward_model string for the RL phase, what the reward phase reports)."""
    init = cfg.model.path
    if demo.reward == "log_ratio":
        return _spec("log_ratio:", sft_path, init), {"trained": False}
    if demo.reward == "init_sft":
        return _init_sft(cfg, demo, sft_path, *data)
    start = init if demo.iqlearn_from == "init" else sft_path
    out = run_child(
        "iqlearn",
        cfg,
        folder="reward",
        model=start,
        data=_rows(cfg),
        method=demo.reward_method,
        training=demo.reward_training,
    )
    reference = {"none": None, "init": init, "sft": sft_path}[demo.implicit_reference]
    checkpoint = _checkpoint(out)
    info = {"trained": True, "checkpoint": checkpoint, "trained_from": start}
    return _spec("implicit:", checkpoint, reference), {**info, "reference": reference}


def _spec(prefix: str, *folders: str | None) -> str:
    """A paired reward spec; its folders are comma-separated, so none may hold a comma."""
    folders = tuple(str(f) for f in folders if f is not None)
    bad = [f for f in folders if "," in f]
    if bad:
        raise ValueError(f"{bad[0]}: a folder whose path holds a comma cannot be a {prefix} reward")
    return prefix + ",".join(folders)


def _init_sft(cfg, demo: DemoRLConfig, sft_path: str, tokenizer, demos) -> tuple[str, dict]:
    """AfD's phases 2 and 3 for its `init_sft` variant, with `reward/` as their folder: π_init
    and π_SFT samples for the demonstration prompts, then the BCE discriminator."""
    # AfD's phase functions are private to its module; they are imported rather than copied so
    # that both pipelines train (and reuse) the discriminator one way.
    from irlalign.modeling.load import ModelOptions, load_model
    from irlalign.pipelines.afd import AfDConfig, _reward_model, _samples

    sub = dataclasses.replace(
        cfg, training={**cfg.training, "output_dir": str(cfg.run_dir / "reward")}
    )
    afd = AfDConfig(
        variants=("init_sft",),
        sft_model=sft_path,
        rm_training=demo.reward_training,
        samples_per_prompt=demo.samples_per_prompt,
        heldout_fraction=demo.heldout_fraction,
        turn_markers=demo.turn_markers,
        sampling=demo.sampling,
    )
    init = load_model(ModelOptions(path=cfg.model.path))
    sft = load_model(ModelOptions(path=sft_path))

    def clean(rollouts):
        return parts.responses(rollouts, demo.turn_markers)

    texts = _samples(sub, afd, demos, (init, sft, sft_path), tokenizer, clean)
    path, info = _reward_model(sub, afd, None, "init_sft", tokenizer, texts)
    return str(path), {"trained": True, **info}


def _rl(cfg, demo: DemoRLConfig, run_child, spec: str, sft_path: str) -> dict[str, Any]:
    """RLOO/PPO from π_SFT against the dense reward; the KL reference is the frozen copy of
    the starting policy, π_SFT."""
    method, training = parts.rl_phase(
        cfg, demo.sampling, {**DENSE, **demo.rl_method}, demo.rl_training, 100
    )
    method["reward_model"] = spec
    out = parts.run_rl_phase(
        cfg, run_child, demo.rl, method, training, model=sft_path, data=_rows(cfg)
    )
    return {"method": demo.rl, **out}


def gold_summary(sft_eval: dict[str, Any], final: dict[str, Any]) -> dict[str, dict]:
    """π_SFT's and the final policy's gold numbers side by side; gap_closed is the RL loop's,
    (J(π) − J(π_SFT)) / (J* − J(π_SFT)), which the RL phase measured at its start."""
    from irlalign.synthetic.evaluate import gap_closed

    start, best = final["objective_start"], final["optimal_objective"]
    sft = {k: sft_eval[k] for k in GOLD_KEYS}
    return {
        "sft": {**sft, "gap_closed": gap_closed(sft["objective"], start, best)},
        "final": {**{k: final[k] for k in GOLD_KEYS}, "gap_closed": final["gap_closed"]},
    }
