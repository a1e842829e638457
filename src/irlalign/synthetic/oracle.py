"""Exact dynamic programming on the toy language.

The expert is the KL-regularised soft-optimal policy relative to π_ref, by backward induction in
float64 over states (t, topic, previous word):

    Q_t(s, a) = r*(s, a) + V_{t+1}(s')          (V after `<eos>` and at t = H is 0)
    V_t(s)    = β log Σ_a π_ref(a|s) exp(Q_t(s, a) / β)
    π*(a|s)   = π_ref(a|s) exp((Q_t(s, a) − V_t(s)) / β)

Every function takes and returns plain arrays shaped (H, K, W, A) (policies, rewards, Q) or
(H + 1, K, W) (values), with the action index W meaning `<eos>`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irlalign.synthetic.language import Task


@dataclass
class SoftOptimal:
    q: np.ndarray  # (H, K, W, A)
    v: np.ndarray  # (H + 1, K, W); v[H] = 0
    policy: np.ndarray  # (H, K, W, A)


def _successor_values(v_next: np.ndarray) -> np.ndarray:
    """V(s') for every action from V_{t+1} (K, W): word a leads to prev = a, `<eos>` to 0."""
    n_k = v_next.shape[0]
    return np.concatenate([v_next, np.zeros((n_k, 1))], axis=1)[:, None, :]


def soft_optimal(ref: np.ndarray, reward: np.ndarray, beta: float) -> SoftOptimal:
    """Backward induction for the soft-optimal policy of `reward` relative to `ref`."""
    horizon, n_k, n_w, _ = ref.shape
    q = np.zeros_like(reward)
    v = np.zeros((horizon + 1, n_k, n_w))
    policy = np.zeros_like(ref)
    with np.errstate(divide="ignore"):
        log_ref = np.log(ref)
    for t in range(horizon - 1, -1, -1):
        q[t] = reward[t] + _successor_values(v[t + 1])
        z = log_ref[t] + q[t] / beta
        z_max = z.max(axis=-1, keepdims=True)
        lse = z_max[..., 0] + np.log(np.exp(z - z_max).sum(axis=-1))
        v[t] = beta * lse
        policy[t] = np.exp(z - lse[..., None])
    return SoftOptimal(q=q, v=v, policy=policy)


def expert(task: Task, beta: float | None = None) -> SoftOptimal:
    """π* (or π_β' for another β'): soft-optimal for r* relative to π_ref at temperature 1."""
    return soft_optimal(task.ref_table(), task.reward_table(), beta or task.config.beta)


def styled(policy: np.ndarray, pairs: list[tuple[int, int]], factor: float) -> np.ndarray:
    """Tilt each synonym pair towards its second word by `factor`, keeping the pair's mass."""
    out = policy.copy()
    for a, b in pairs:
        mass = policy[..., a] + policy[..., b]
        weighted_b = factor * policy[..., b]
        denom = policy[..., a] + weighted_b
        safe = np.where(denom > 0, denom, 1.0)
        out[..., a] = np.where(denom > 0, mass * policy[..., a] / safe, 0.0)
        out[..., b] = np.where(denom > 0, mass * weighted_b / safe, 0.0)
    return out


def favour_words(policy: np.ndarray, words: np.ndarray, factor: float) -> np.ndarray:
    """Make `words` `factor` times likelier in every state, renormalised: a habit of style that,
    unlike `styled`, also moves mass between words that differ in reward."""
    out = policy.copy()
    out[..., words] *= factor
    return out / out.sum(axis=-1, keepdims=True)


def policy_values(policy: np.ndarray, per_step: np.ndarray) -> np.ndarray:
    """Expected sum of `per_step(t, k, w, a)` under `policy` from every state: (H + 1, K, W)."""
    horizon, n_k, n_w, _ = policy.shape
    v = np.zeros((horizon + 1, n_k, n_w))
    for t in range(horizon - 1, -1, -1):
        v[t] = (policy[t] * (per_step[t] + _successor_values(v[t + 1]))).sum(axis=-1)
    return v


def cross_moments(policy: np.ndarray, f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """E[(Σ_t f)(Σ_t g)] under `policy` from every state, for per-step tables f and g shaped
    (H, K, W, A): (H + 1, K, W). With f = g it is the second moment of Σ_t f (its variance
    once the squared mean is taken off); the recursion expands (f + F')(g + G'), with F' and G'
    the sums still to come from the successor state."""
    horizon, n_k, n_w, _ = policy.shape
    mf, mg = policy_values(policy, f), policy_values(policy, g)
    m = np.zeros((horizon + 1, n_k, n_w))
    for t in range(horizon - 1, -1, -1):
        f_next, g_next = _successor_values(mf[t + 1]), _successor_values(mg[t + 1])
        terms = f[t] * g[t] + f[t] * g_next + g[t] * f_next + _successor_values(m[t + 1])
        m[t] = (policy[t] * terms).sum(axis=-1)
    return m


def kl_per_step(policy: np.ndarray, other: np.ndarray) -> np.ndarray:
    """KL(policy(·|s) ‖ other(·|s)) spread over actions, for `policy_values`: (H, K, W, A)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(policy > 0, np.log(policy) - np.log(other), 0.0)
    return terms


def start_values(values: np.ndarray, topics: np.ndarray, last_words: np.ndarray) -> np.ndarray:
    """Values at response start (t = 0) for prompts given by topic and last prompt word."""
    return values[0, topics, last_words]


def sample(
    policy: np.ndarray, topics: np.ndarray, last_words: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sample one response per prompt from a tabular policy; each ends with the `<eos>` action."""
    horizon, _, n_w, _ = policy.shape
    n = len(topics)
    prev = np.asarray(last_words).copy()
    alive = np.ones(n, dtype=bool)
    actions = np.full((n, horizon), -1, dtype=np.int64)
    for t in range(horizon):
        rows = policy[t, topics, prev]
        u = rng.random(n)[:, None]
        a = (rows.cumsum(axis=1) < u).sum(axis=1).clip(max=n_w)
        actions[alive, t] = a[alive]
        alive &= a != n_w
        prev = np.where(a == n_w, prev, a)
        if not alive.any():
            break
    return [row[: int(np.argmax(row == n_w)) + 1] for row in actions]


def sequence_log_probs(
    policy: np.ndarray, topic: int, last_word: int, actions: np.ndarray
) -> np.ndarray:
    """Per-token log policy(a_t | s_t) along one response (action indices)."""
    prev = np.concatenate([[last_word], actions[:-1]])
    t = np.arange(len(actions))
    with np.errstate(divide="ignore"):
        return np.log(policy[t, topic, prev, actions])


def sequence_rewards(reward: np.ndarray, topic: int, last_word: int, actions: np.ndarray):
    """Per-token r*(s_t, a_t) along one response (action indices)."""
    prev = np.concatenate([[last_word], actions[:-1]])
    return reward[np.arange(len(actions)), topic, prev, actions]
