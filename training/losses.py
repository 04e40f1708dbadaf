"""Losses: small pure functions over tensors, each tested against hand values.

    completion_nll          SFT: weighted next-token NLL of the completion (optionally restricted vocabulary)
    label_ce                SFT, grade_objective="labels": the grade's cross-entropy over the label tokens only
    explanation_plus_label_ce  SFT, grade_objective="labels": mean explanation NLL + grade_weight x label_ce
    group_step_advantages   Stepwise-GRPO: rewards (N, S) -> advantages normalised per group and per step
    varied_groups           which groups carry a learning signal (rewards not constant on every step)
    step_token_advantages   each token gets its step's advantage, every step weighted alike
    clipped_policy_loss     PPO-clipped surrogate, token mean per sequence (TRL loss_type="grpo")
    clip_fraction           share of tokens whose ratio the clipping stopped (TRL's clip_ratio)
    mode_balanced_loss      policy loss + lambda x expert NLL
    k3_kl                   reference-KL penalty: the k3 estimate of KL(policy || reference), token mean per sequence
    label_kl                distillation: KL(teacher || student) over the grade labels at the first position
    grade_weighted_lm_loss  SFT on full-vocabulary logits (the trl engine): completion NLL, grade token weighted

`completion_nll` is the SFT loss. Its softmax may run over a subset of the
vocabulary (the tokens that occur in the training completions): on 2 CPU
cores the full 151,936-row projection costs ~5x the rest of the step for a
tiny model, while tokens absent from every target only ever receive a push
down. The grade token (first completion position) keeps its own weight
because serving reads only that position. With `SFTConfig.grade_objective`
"labels" that position is trained on what serving reads: the label
distribution renormalised over the K label tokens (`label_ce`), as its own
term beside the explanation tokens' mean NLL (`explanation_plus_label_ce`),
so a long explanation does not dilute it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def completion_nll(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    vocab_subset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean next-token NLL at the selected positions.

    hidden: (N, H) final hidden states of the positions that predict a target
    head_weight: (V, H) output embedding
    targets: (N,) token ids in the full vocabulary
    weights: (N,) per-position weight (e.g. the grade token weighs more)
    vocab_subset: (S,) sorted token ids that the softmax runs over; every
        target must be in it. None = full vocabulary.
    """
    if vocab_subset is None:
        logits = hidden @ head_weight.T  # (N, V)
        local = targets
    else:
        logits = hidden @ head_weight[vocab_subset].T  # (N, S)
        local = torch.searchsorted(vocab_subset, targets)
        if not torch.equal(vocab_subset[local.clamp(max=len(vocab_subset) - 1)], targets):
            raise ValueError("a target token is missing from vocab_subset")
    nll = F.cross_entropy(logits.float(), local, reduction="none")  # (N,)
    return (nll * weights).sum() / weights.sum()


def label_ce(
    grade_hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor, label_ids: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of the grade over the label tokens only (the distribution serving renormalises).

    grade_hidden: (B, H) hidden states of the positions that predict the grade; head_weight: (V, H);
    targets: (B,) the grade token ids; label_ids: (K,) the label token ids (every target among them).
    """
    hits = targets[:, None] == label_ids[None]  # (B, K)
    if not bool(hits.any(dim=1).all()):
        raise ValueError("a grade target is not one of the label tokens")
    logits = grade_hidden @ head_weight[label_ids].T  # (B, K)
    return F.cross_entropy(logits.float(), hits.float().argmax(dim=1))


def explanation_plus_label_ce(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    is_grade: torch.Tensor,
    label_ids: torch.Tensor,
    grade_weight: float,
    vocab_subset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean NLL of the explanation tokens (softmax as `completion_nll`) + grade_weight x `label_ce` of the grades.

    hidden: (N, H); targets, is_grade: (N,) as `training.sft_data.SFTBatch`. The two terms are means of
    their own, so the grade's share of the loss does not shrink as explanations grow; a batch of bare
    grades (no explanation token) has the label term only.
    """
    explain = ~is_grade
    grade = grade_weight * label_ce(hidden[is_grade], head_weight, targets[is_grade], label_ids)
    if not bool(explain.any()):
        return grade
    ones = torch.ones(int(explain.sum()), device=hidden.device)
    return completion_nll(hidden[explain], head_weight, targets[explain], ones, vocab_subset) + grade


# Stepwise-GRPO and mode-balanced optimisation --------------------------------
#
# Shapes: G completions per prompt, N = prompts x G rows, S steps per completion
# (training.rewards.STEP_NAMES), T completion tokens (right-padded).


def group_step_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Advantages normalised within each group, separately for every step.

    rewards: (N, S), rows ordered group by group (G consecutive rows share a prompt)
    returns: (N, S) with A[i, s] = (r[i, s] - mean_g r[:, s]) / (std_g r[:, s] + eps),
        std unbiased as in TRL; a step on which the whole group earned the same reward gets 0.
    """
    grouped = _grouped(rewards, group_size)  # (P, G, S)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    constant = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)  # (P, 1, S); float means need not be exact
    return torch.where(constant, 0.0, (grouped - mean) / (std + eps)).view_as(rewards)


def varied_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(P,) True where a group's rewards differ on at least one step.

    rewards: (N, S), grouped as in `group_step_advantages`. A group whose every step earned one
    reward across its G completions has all-zero advantages: it teaches nothing, and the RL loop
    leaves it out of the policy loss (DAPO's dynamic sampling, without the resampling), so it
    neither dilutes the mean over sequences nor counts in its normaliser.
    """
    grouped = _grouped(rewards, group_size)  # (P, G, S)
    return (grouped != grouped[:, :1]).flatten(1).any(dim=1)


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    n, s = rewards.shape
    if group_size < 2 or n % group_size:
        raise ValueError(f"{n} rows do not split into groups of {group_size} (need group_size >= 2)")
    return rewards.float().view(n // group_size, group_size, s)


def step_token_advantages(
    step_advantages: torch.Tensor, step_ids: torch.Tensor, mask: torch.Tensor, step_weights: torch.Tensor
) -> torch.Tensor:
    """Each token gets its step's advantage, scaled so every step weighs the same in the loss.

    step_advantages: (N, S); step_ids: (N, T) long, the step of each token; mask: (N, T) 1 on real tokens;
    step_weights: (S,) relative weight of each step.
    returns: (N, T) advantages. With a per-sequence token-mean loss (`clipped_policy_loss`, TRL's
        loss_type="grpo") a row's loss becomes sum_s w_s * mean_{t in s} loss_t / sum_{s present} w_s:
        the one grade token weighs as much as the ~15 tokens of a section, instead of 1/60 of the row.
    """
    mask = mask.float()
    s = step_advantages.shape[1]
    per_token = step_advantages.gather(1, step_ids)  # (N, T)
    onehot = torch.nn.functional.one_hot(step_ids, s).float() * mask[..., None]  # (N, T, S)
    counts = onehot.sum(dim=1)  # (N, S) tokens per step
    weights = step_weights.float()[None].expand_as(counts)
    present = (weights * (counts > 0)).sum(dim=1, keepdim=True).clamp(min=1e-12)  # (N, 1)
    token_count = mask.sum(dim=1, keepdim=True)  # (N, 1)
    scale = weights.gather(1, step_ids) * token_count / (counts.gather(1, step_ids).clamp(min=1) * present)
    return per_token * scale * mask


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2
) -> torch.Tensor:
    """PPO-clipped surrogate, token mean per sequence, then mean over sequences (TRL loss_type="grpo").

    logps, old_logps, advantages, mask: (N, T). On-policy (old = logps.detach()) the ratio is 1
    and the gradient is -mean(A * grad log pi).
    """
    mask = mask.float()
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    per_token = -torch.min(ratio * advantages, clipped * advantages)  # (N, T)
    return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def clip_fraction(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2
) -> float:
    """Share of the real tokens on which `clipped_policy_loss` takes the clipped branch (no gradient there).

    A token is clipped when its ratio left [1 - eps, 1 + eps] in the direction its advantage pushes
    (ratio > 1 + eps with A > 0, ratio < 1 - eps with A < 0), as TRL's `clip_ratio` counts it.
    On-policy (the first update of a batch) every ratio is 1 and the fraction is 0.
    """
    ratio = torch.exp(logps.detach() - old_logps)
    clipped = ((ratio > 1 + clip_eps) & (advantages > 0)) | ((ratio < 1 - clip_eps) & (advantages < 0))
    real = mask > 0
    return (clipped & real).sum().item() / max(1, int(real.sum().item()))


def mode_balanced_loss(policy_loss: torch.Tensor, expert_nll: torch.Tensor, lam: float) -> torch.Tensor:
    """Mode-Balanced Optimisation: the RL objective plus lambda x the SFT NLL of an expert batch."""
    return policy_loss + lam * expert_nll


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) from the sampled tokens, with Schulman's k3 estimator, aggregated like the policy loss.

    logps, ref_logps: (N, T) log-probabilities of the sampled tokens under the policy and the frozen
    reference; mask: (N, T) 1 on real tokens. Per token k3 = r - log r - 1 with r = pi_ref / pi: unbiased
    for KL(pi || pi_ref) when tokens are drawn from pi, never negative, 0 where the two agree. Token mean
    per sequence, then mean over sequences (as `clipped_policy_loss`, and TRL's loss_type="grpo" with beta > 0).
    """
    mask = mask.float()
    delta = ref_logps - logps  # (N, T) log r
    per_token = torch.exp(delta) - delta - 1
    return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def label_kl(student_label_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """First-token distillation: KL(teacher || student) over the K grade labels, mean over rows.

    student_label_logits: (N, K) logits of the label tokens only (renormalised here, as serving does);
    teacher_probs: (N, K) the teacher's label distribution. Scaled by T^2 (Hinton et al.) so the
    gradient size does not depend on the temperature.
    """
    log_student = torch.log_softmax(student_label_logits.float() / temperature, dim=-1)
    teacher = teacher_probs.float()
    if temperature != 1.0:
        teacher = torch.softmax(torch.log(teacher.clamp(min=1e-12)) / temperature, dim=-1)
    kl = (teacher * (torch.log(teacher.clamp(min=1e-12)) - log_student)).sum(dim=-1)
    return kl.mean() * temperature**2


def grade_weighted_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, grade_weight: float, num_items_in_batch: int | None = None
) -> torch.Tensor:
    """Causal-LM NLL of the completion tokens with the first one (the grade) weighted `grade_weight`.

    logits: (B, T, V); labels: (B, T), -100 on prompt and padding; position t predicts labels[t + 1].
    The sum is divided by the summed weights (as `completion_nll`), or, when the trainer counts the
    completion tokens of the whole accumulated batch, by `num_items_in_batch`, so gradient accumulation
    and several processes add up as they do for TRL's own loss.
    """
    shift_labels = labels[:, 1:]  # (B, T - 1)
    valid = shift_labels != -100
    nll = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(shift_labels)
    first = valid & (valid.long().cumsum(dim=1) == 1)  # the first completion token of each row
    weights = torch.where(first, grade_weight, 1.0) * valid
    denominator = weights.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
    return (nll * weights).sum() / denominator.clamp(min=1)
