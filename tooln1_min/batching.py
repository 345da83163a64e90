"""Sequences -> micro-batches -> the tensors of one training forward.

A GRPO step scores and trains on `prompt + completion` sequences. They are cut into micro-batches of at most a
token budget (padded tokens), and the n completions of one prompt share a row when they fit (`pack_len`): the
prompt is computed once, each completion attends to it and to itself with the positions it would have alone, so
its log-probs are those of its own unpacked sequence. Only the completion positions are projected to the
vocabulary (`MicroBatch.at`), never the prompt's.

Nothing here is collective: every rank must run the same number of forwards (FSDP's collectives pair up), so the
trainer pads each rank's plan to the longest one with empty micro-batches (`pad_plan`).
"""
from dataclasses import dataclass

import torch

Sequence = tuple[list[int], int]  # (prompt + completion token ids, index where the completion starts)


def make_sequences(prompt_ids, completion_ids) -> list[Sequence]:
    """Concatenate prompt + completion; the loss mask covers the completion tokens (position t predicts t+1)."""
    return [(p + c, len(p)) for p, c in zip(prompt_ids, completion_ids)]


def _joins(seqs, prev, i, row_len, pack_len) -> bool:
    """Whether sequence i continues the row that sequence prev ends: same prompt, and the row stays <= pack_len."""
    (a, p), (b, q) = seqs[prev], seqs[i]
    return bool(pack_len) and row_len + len(b) - q <= pack_len and p == q and a[:p] == b[:q]


def pack_rows(seqs, idx, pack_len):
    """Rows of one forward: consecutive sequences with the same prompt (a GRPO group) share a row, the prompt once
    and then each completion, while the row stays within pack_len tokens (0: one sequence per row)."""
    rows, lengths = [], []
    for i in idx:
        s, start = seqs[i]
        if rows and _joins(seqs, rows[-1][-1], i, lengths[-1], pack_len):
            rows[-1].append(i)
            lengths[-1] += len(s) - start
        else:
            rows.append([i])
            lengths.append(len(s))
    return rows, lengths


def plan_micro_batches(seqs, token_budget, pack_len=0) -> list[list[int]]:
    """Split sequences into micro-batches (lists of indices into seqs) of <= token_budget padded tokens, rows
    packed as in pack_rows. A sequence longer than the budget gets a micro-batch of its own."""
    groups, cur, lengths = [], [], []
    for i, (s, start) in enumerate(seqs):
        if cur and _joins(seqs, cur[-1], i, lengths[-1], pack_len):
            new = lengths[:-1] + [lengths[-1] + len(s) - start]
        else:
            new = lengths + [len(s)]
        if cur and max(new) * len(new) > token_budget:
            groups.append(cur)
            cur, new = [], [len(s)]
        cur.append(i)
        lengths = new
    if cur:
        groups.append(cur)
    return groups


def pad_plan(plan: list[list[int]], count: int) -> list[list[int]]:
    """plan + empty micro-batches up to count ([] = a forward of one padding token with an all-zero mask)."""
    return plan + [[] for _ in range(count - len(plan))]


@dataclass
class MicroBatch:
    """The tensors of one training forward over S sequences in B rows (M sequences at most per row, K = the
    longest completion). Each sequence's K-position window predicts its completion tokens."""
    ids: torch.Tensor                # (B, T) token ids, right-padded with pad_id
    positions: torch.Tensor | None   # (B, T) each token's position in its own sequence; None: arange (unpacked)
    attn: torch.Tensor | None        # (B, T, T) bool, query i may see key j; None: plain causal (flash-friendly)
    at: torch.Tensor                 # (B, M, K) row positions whose next token is completion token k of slot m
    targets: torch.Tensor            # (B, M, K) those next tokens (pad_id past a completion's end)
    take: torch.Tensor               # (S,) the flat (row * M + slot) of each sequence, in the order given
    mask: torch.Tensor               # (S, K) 1.0 on real completion tokens

    def to(self, device) -> "MicroBatch":
        return MicroBatch(**{k: v.to(device) if v is not None else None for k, v in vars(self).items()})


def collate(seqs, idx, pad_id, device, pack_len=0) -> MicroBatch:
    """One forward's tensors for sequences `idx` (see MicroBatch). In a packed row each completion attends to the
    shared prompt and to itself, with the positions it would have alone."""
    if not idx:  # an empty micro-batch, for ranks with fewer forwards than the others
        z = torch.zeros(1, 1, dtype=torch.long)
        return MicroBatch(ids=torch.full((1, 2), pad_id), positions=None, attn=None, at=z[:, :, None],
                          targets=z + pad_id, take=z[0], mask=torch.zeros(1, 1)).to(device)
    rows, lengths = pack_rows(seqs, idx, pack_len)
    B, T, M = len(rows), max(lengths), max(map(len, rows))
    if M > 1:  # packed rows need a (T, T) mask: 16-aligned rows let CUDA's fused kernel use it without a padded copy
        T = -(-T // 16) * 16
    K = max(len(seqs[i][0]) - seqs[i][1] for i in idx)
    ids, positions = torch.full((B, T), pad_id, dtype=torch.long), torch.zeros(B, T, dtype=torch.long)
    segment = torch.full((B, T), -1, dtype=torch.long)  # 0: the shared prompt, m + 1: completion m, -1: padding
    at, targets = torch.zeros(B, M, K, dtype=torch.long), torch.full((B, M, K), pad_id, dtype=torch.long)
    mask, take = torch.zeros(B, M, K), []
    for r, row in enumerate(rows):
        first, p = seqs[row[0]]
        ids[r, :p], positions[r, :p], segment[r, :p] = torch.tensor(first[:p]), torch.arange(p), 0
        off = p
        for m, i in enumerate(row):
            c = seqs[i][0][p:]
            L = len(c)
            ids[r, off:off + L], positions[r, off:off + L] = torch.tensor(c), torch.arange(p, p + L)
            segment[r, off:off + L] = m + 1
            window = torch.tensor([p - 1] + list(range(off, off + L - 1)))  # c[0] comes from the prompt's end
            at[r, m] = window[torch.arange(K).clamp(max=L - 1)]  # past the completion: masked out
            targets[r, m, :L], mask[r, m, :L] = torch.tensor(c), 1.0
            take.append(r * M + m)
            off += L
    attn = None  # one sequence per row: right padding needs no mask under causal attention
    if M > 1:  # built where it is used: (B, T, T) is 4 x 4096^2 = 67 MB a micro-batch to copy, the segments 128 kB
        segment = segment.to(device)
        q, k = segment[:, :, None], segment[:, None, :]
        attn = torch.ones(T, T, dtype=torch.bool, device=device).tril_() & ((k == 0) | (k == q))
    else:
        positions = None  # the default arange; explicit zeros on padding would read as packed segments
    take = torch.tensor(take)
    return MicroBatch(ids=ids, positions=positions, attn=attn, at=at, targets=targets, take=take,
                      mask=mask.view(B * M, K)[take]).to(device)


def forward_logprobs(model, mb: MicroBatch, temperature=1.0, vocab_limit=None, entropy=False):
    """Log-probs (S, K) in fp32 of each sequence's completion tokens (logits / temperature, as verl scores
    rollouts), and their entropy too when asked. Ids past the tokenizer's vocabulary are excluded, as in the
    sampler, so both score the same distribution. The model projects the window to the vocabulary a chunk at a
    time (model.head_logprobs), so the window's full logits never exist."""
    B, M, K = mb.at.shape
    out = model(mb.ids, position_ids=mb.positions, attention_mask=mb.attn, logits_at=mb.at.view(B, -1),
                targets=mb.targets.view(B, -1), temperature=temperature, vocab_limit=vocab_limit, entropy=entropy)
    if entropy:
        return out[0].view(B * M, K)[mb.take], out[1].view(B * M, K)[mb.take]
    return out.view(B * M, K)[mb.take]
