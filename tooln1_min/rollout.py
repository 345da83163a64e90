"""From records to scored completions: tokenize prompts, sample with the sampler, decode, reward.

Shared by train.py (GRPO rollouts, held-out evaluation) and eval.py (`--data`). Every rank handles its own slice
of records; `heldout_eval` sums the counts over ranks.
"""
from dataclasses import dataclass

from . import dist as tdist
from .data import CASES, render_prompt
from .reward import format_ok, tool_call_reward
from .sampler import generate


@dataclass
class Episode:
    """One sampled completion of one prompt (GRPO's unit of data)."""
    prompt_index: int          # index into the step's prompt list
    prompt_ids: list[int]
    completion_ids: list[int]
    sampler_logprobs: list[float]
    text: str                  # decoded completion (special tokens dropped, <tool_call> kept)
    reward: float
    format_ok: bool
    finish_reason: str


def encode_prompts(tokenizer, records, max_prompt_len: int):
    """Token ids of each record's Tool-N1 prompt; records over max_prompt_len are reported, not silently cut."""
    ids, kept, too_long = [], [], 0
    for r in records:
        p = tokenizer.encode(render_prompt(tokenizer, r))
        if len(p) > max_prompt_len:
            too_long += 1
            continue
        ids.append(p)
        kept.append(r)
    return ids, kept, too_long


def rollout(model, tokenizer, records, prompt_ids, *, n, max_new_tokens, temperature, reward_fn=tool_call_reward,
            seed=0, top_p=1.0, top_k=0, max_batch_size=256, progress=False, stream_ids=None):
    """Sample n completions per prompt and reward them. Returns (episodes, reward_errors)."""
    samples = generate(model, prompt_ids, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                       top_p=top_p, top_k=top_k, stop_token_ids=tokenizer.stop_token_ids, seed=seed,
                       vocab_limit=tokenizer.vocab_size, max_batch_size=max_batch_size, progress=progress,
                       stream_ids=stream_ids)
    episodes, errors = [], 0
    for i, (record, p, group) in enumerate(zip(records, prompt_ids, samples)):
        for s in group:
            # The completion alone, special tokens dropped. Tool-N1's verl decodes prompt + response with them kept
            # and scores what follows the last "<|im_start|>assistant": the same text unless a reply generates
            # that header itself (sampling stops at <|im_end|> first).
            text = tokenizer.decode(s.token_ids, skip_special_tokens=True)
            try:
                reward = float(reward_fn(text, record["answer"]))
            except Exception:  # a reward that raises is counted and logged, never a crash mid-run
                reward, errors = 0.0, errors + 1
            episodes.append(Episode(i, p, s.token_ids, s.logprobs, text, reward, format_ok(text), s.finish_reason))
    return episodes, errors


def heldout_eval(model, tokenizer, records, *, max_new_tokens=256, max_prompt_len=4096, temperature=0.0, n=1,
                 seed=0, rank=0, world_size=1, device="cpu", max_batch_size=256, progress=False):
    """Exact-match accuracy (the training reward), format rate and mean response length on `records`,
    greedy by default; each rank takes every world_size-th record and the counts are summed.

    n > 1 samples each record n times (temperature > 0): accuracy and the rates are then means over all samples,
    and pass_at_n is the share of records with at least one exact match, the most GRPO can sharpen towards.
    """
    if n < 1 or (n > 1 and temperature <= 0):
        raise ValueError(f"heldout_eval: n={n} samples need n >= 1, and temperature > 0 when n > 1 (greedy samples "
                         f"are all the same); got temperature={temperature}")
    mine = range(rank, len(records), world_size)
    ids, kept, too_long = encode_prompts(tokenizer, [records[i] for i in mine], max_prompt_len)
    streams = []  # each kept record's global index: its random stream, whatever the number of ranks
    for i in mine:
        if len(streams) < len(kept) and records[i] is kept[len(streams)]:
            streams.append(i)
    eps, _ = rollout(model, tokenizer, kept, ids, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                     seed=seed, max_batch_size=max_batch_size, progress=progress, stream_ids=streams) if kept \
        else ([], 0)
    case = [kept[e.prompt_index].get("case") for e in eps]  # synthetic records name their case type
    solved = {e.prompt_index for e in eps if e.reward == 1.0}
    counts = {"correct": sum(e.reward == 1.0 for e in eps), "format": sum(e.format_ok for e in eps),
              "tokens": sum(len(e.completion_ids) for e in eps), "count": len(eps), "too_long": too_long,
              "passed": len(solved)}
    for c in CASES:
        counts[f"samples_{c}"] = sum(k == c for k in case)
        counts[f"correct_{c}"] = sum(e.reward == 1.0 for e, k in zip(eps, case) if k == c)
        counts[f"passed_{c}"] = sum(kept[i].get("case") == c for i in solved)
    tot = tdist.all_reduce_dict(counts, device=device)
    denom = max(tot["count"], 1)
    result = {"accuracy": tot["correct"] / denom, "format_rate": tot["format"] / denom,
              "mean_response_len": tot["tokens"] / denom, "count": int(tot["count"] // n),
              "skipped_too_long": int(tot["too_long"])}
    if n > 1:
        result["pass_at_n"] = tot["passed"] / max(tot["count"] // n, 1)
    for c in CASES:
        m = tot[f"samples_{c}"]
        if m:
            result[f"accuracy_{c}"] = tot[f"correct_{c}"] / m
            result[f"count_{c}"] = int(m // n)
            if n > 1:
                result[f"pass_at_n_{c}"] = tot[f"passed_{c}"] / (m // n)
    return result, eps
