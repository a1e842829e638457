"""Exact and Monte-Carlo metrics of the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from irlalign.eval.metrics import distinct_n, mean_and_se, pairwise_accuracy, self_bleu, spearman
from irlalign.synthetic import oracle
from irlalign.synthetic.language import Task
from irlalign.synthetic.model import action_token_ids
from irlalign.synthetic.sampling import Samples
from irlalign.synthetic.text import Prompts, parse_prompt, parse_response

ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def exact_returns(task: Task, policy: np.ndarray, prompts: Prompts) -> np.ndarray:
    """Exact expected return of a tabular policy from each prompt."""
    values = oracle.policy_values(policy, task.reward_table())
    return oracle.start_values(values, prompts.topics, prompts.last_words)


def policy_metrics(task: Task, prompts: Prompts, samples: Samples) -> dict[str, float]:
    """Gold return (± SE over prompts), normalised score, KLs and diversity of samples."""
    reward, ref = task.reward_table(), task.ref_table()
    expert = oracle.expert(task).policy
    topics, last = prompts.topics[samples.prompt_index], prompts.last_words[samples.prompt_index]
    rows = list(zip(topics, last, samples.actions, samples.logp, strict=True))
    returns = np.array([oracle.sequence_rewards(reward, k, w, a).sum() for k, w, a, _ in rows])
    kl_ref = [lp.sum() - oracle.sequence_log_probs(ref, k, w, a).sum() for k, w, a, lp in rows]
    kl_exp = [lp.sum() - oracle.sequence_log_probs(expert, k, w, a).sum() for k, w, a, lp in rows]
    per_prompt = np.bincount(samples.prompt_index, weights=returns, minlength=len(prompts))
    per_prompt /= np.bincount(samples.prompt_index, minlength=len(prompts))
    gold, gold_se = mean_and_se(per_prompt)
    objective, objective_se = _per_prompt_mean(
        returns - task.config.beta * np.asarray(kl_ref), samples.prompt_index, len(prompts)
    )
    r_ref = float(exact_returns(task, ref, prompts).mean())
    r_exp = float(exact_returns(task, expert, prompts).mean())
    words = [[task.words[i] for i in a[:-1]] for a in samples.actions]
    groups: dict[int, list] = {}
    for i, w in zip(samples.prompt_index, words, strict=True):
        groups.setdefault(int(i), []).append(w)
    return {
        "gold_return": gold,
        "gold_return_se": gold_se,
        "ref_return": r_ref,
        "expert_return": r_exp,
        "normalised_score": (gold - r_ref) / (r_exp - r_ref),
        "normalised_score_se": gold_se / abs(r_exp - r_ref),
        # The KL-regularised objective J(π) = E[R] − β·KL(π‖π_ref) (task β and π_ref, per
        # response; Monte Carlo over the samples) and its exact optimum J* = E_x V*(x), which
        # π* attains.
        "objective": objective,
        "objective_se": objective_se,
        "optimal_objective": optimal_objective(task, prompts),
        "kl_ref": float(np.mean(kl_ref)),
        "kl_expert": float(np.mean(kl_exp)),
        "distinct_1": distinct_n(words, 1),
        "distinct_2": distinct_n(words, 2),
        "self_bleu": self_bleu(list(groups.values())),
        "entropy": float(np.concatenate(samples.entropy).mean()),
        "mean_length": float(np.mean([len(a) for a in samples.actions])),
        "n_samples": len(samples.actions),
        "n_prompts": len(prompts),
        **samples.extra,
    }


# Keys that measure a KL to another policy, directly or through J(π). For greedy decoding they
# are reported as None: the decoded policy is a point mass on one response per prompt, and its
# "KL" to π* collapses to −log π*(y) of that response, a likelihood rather than a divergence
# between the two distributions, not comparable with the sampled rows.
KL_KEYS = ("kl_ref", "kl_expert", "objective", "objective_se")


def frontier_row(task: Task, prompts: Prompts, samples: Samples, temperature: float) -> dict:
    """`policy_metrics` of samples drawn at `temperature` (0: greedy), with the decoding named;
    for greedy decoding the KL-based keys are None."""
    greedy = temperature == 0.0
    row = {"decoding": "greedy" if greedy else "sample", "temperature": float(temperature)}
    row.update(policy_metrics(task, prompts, samples))
    if greedy:
        row.update(dict.fromkeys(KL_KEYS))
    return row


def _per_prompt_mean(values: np.ndarray, prompt_index: np.ndarray, n_prompts: int):
    """Mean over prompts of the per-prompt sample means, and its standard error."""
    sums = np.bincount(prompt_index, weights=values, minlength=n_prompts)
    counts = np.bincount(prompt_index, minlength=n_prompts)
    return mean_and_se(sums[counts > 0] / counts[counts > 0])


def exact_objective(task: Task, policy: np.ndarray, prompts: Prompts) -> np.ndarray:
    """J(π) of a tabular policy from each prompt, exactly: the expected return of the per-step
    reward r*(s, a) − β·log(π(a|s) / π_ref(a|s))."""
    per_step = task.reward_table() - task.config.beta * oracle.kl_per_step(policy, task.ref_table())
    values = oracle.policy_values(policy, per_step)
    return oracle.start_values(values, prompts.topics, prompts.last_words)


def optimal_objective(task: Task, prompts: Prompts) -> float:
    """J* = E_x V*(x): the soft value of the start state under π*, exact."""
    values = oracle.expert(task).v
    return float(oracle.start_values(values, prompts.topics, prompts.last_words).mean())


def gap_closed(objective: float, start: float, optimum: float) -> float:
    """(J(π) − J(π₀)) / (J* − J(π₀)): the fraction of the way from the start to the optimum."""
    return (objective - start) / (optimum - start)


@torch.no_grad()
def reference_kl(model, tokenizer, task: Task, texts: Sequence[str]) -> float:
    """Exact KL(π_ref ‖ model) per response token, averaged over held-out `prompt response` texts.

    At every response state the model's full next-token distribution is compared with the
    tabular π_ref row; mass the model puts on non-action tokens counts against it.
    """
    ref, act_ids = task.ref_table(), torch.as_tensor(action_token_ids(task))
    total, count = 0.0, 0
    for start in range(0, len(texts), 256):
        chunk = texts[start : start + 256]
        tokenizer.padding_side = "right"
        enc = tokenizer(list(chunk), add_special_tokens=False, padding=True, return_tensors="pt")
        logq = torch.log_softmax(model(**enc.to(model.device)).logits.float(), -1).cpu()
        for row, text in enumerate(chunk):
            prompt, _, response = text.partition(" <sep> ")
            topic, words = parse_prompt(task, prompt + " <sep>")
            actions = parse_response(task, response)
            sep = len(words) + 2  # position of <sep>: it predicts the first response token
            prev = np.concatenate([[words[-1]], actions[:-1]])
            t = np.arange(len(actions))
            p_ref = torch.as_tensor(ref[t, topic, prev])  # (n, A)
            log_q = logq[row, sep + t][:, act_ids].double()
            with np.errstate(divide="ignore"):
                log_p = torch.log(p_ref)
            terms = torch.where(p_ref > 0, p_ref * (log_p - log_q), torch.zeros_like(p_ref))
            total += float(terms.sum())
            count += len(actions)
    return total / count


def reward_model_metrics(task_prefs, score: ScoreFn) -> dict[str, float]:
    """Pairwise accuracy against the true ordering and Spearman with the true return."""
    prompts = list(task_prefs["prompt"])
    chosen, rejected = list(task_prefs["chosen"]), list(task_prefs["rejected"])
    s_c = np.asarray(score(prompts, chosen), dtype=float)
    s_r = np.asarray(score(prompts, rejected), dtype=float)
    g_c = np.asarray(task_prefs["chosen_return"], dtype=float)
    g_r = np.asarray(task_prefs["rejected_return"], dtype=float)
    return {
        "pairwise_accuracy": pairwise_accuracy(s_c, s_r, g_c, g_r),
        "label_accuracy": float(np.mean(s_c > s_r)),
        "spearman": spearman(np.concatenate([s_c, s_r]), np.concatenate([g_c, g_r])),
        "n_pairs": len(prompts),
    }


TokenRewardFn = Callable[[Sequence[str], Sequence[str]], list]


def reward_recovery(task: Task, prompts: Sequence[str], responses: Sequence[str], learned) -> dict:
    """Spearman of learned per-token rewards with r* over all response tokens.

    ``learned`` holds one array per response, one entry per response token (words and `<eos>`;
    the benchmark's tokenizer is word-level). A reward is identified only up to potential shaping,
    so the second number compares with r* shaped by the expert's own soft value,
    r*(s, a) + V*(s') − V*(s) = β·log(π*(a|s) / π_ref(a|s)) (the soft advantage): a reward that
    equals r* up to shaping by V* scores 1 there, even if its raw correlation is low.
    """
    star = oracle.expert(task)
    beta, ref = task.config.beta, task.ref_table()
    raw, shaped, mine = [], [], []
    for prompt, response, values in zip(prompts, responses, learned, strict=True):
        topic, words = parse_prompt(task, prompt)
        actions = parse_response(task, response)
        values = np.asarray(values, dtype=float)
        if len(values) != len(actions):
            n, m = len(values), len(actions)
            raise ValueError(f"{n} learned rewards for {m} tokens in {response!r}")
        raw.append(oracle.sequence_rewards(task.reward_table(), topic, words[-1], actions))
        log_star = oracle.sequence_log_probs(star.policy, topic, words[-1], actions)
        log_ref = oracle.sequence_log_probs(ref, topic, words[-1], actions)
        shaped.append(beta * (log_star - log_ref))
        mine.append(values)
    mine_all = np.concatenate(mine)
    return {
        "recovery_spearman_raw": spearman(mine_all, np.concatenate(raw)),
        "recovery_spearman_shaped": spearman(mine_all, np.concatenate(shaped)),
        "recovery_tokens": int(len(mine_all)),
    }
