"""Sequences -> micro-batches -> the tensors of one training forward (tooln1_min/batching.py)."""
import pytest
import torch

from tooln1_min.batching import MicroBatch, collate, forward_logprobs, make_sequences, pack_rows, pad_plan, \
    plan_micro_batches


@pytest.mark.parametrize("pack_len", [0, 4096, 14])
def test_completion_window_logprobs_match_full_forward(pack_len):
    """collate + forward_logprobs project only the completion window, and pack a group's samples into one row (the
    prompt once); either way the result must equal the log-softmax of a full forward of each sequence alone."""
    from helpers import make_model
    model = make_model("qwen2_gqa_tied")
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 120, (n,), generator=g).tolist() for n in (5, 2, 9)]
    prompts = [prompts[0]] * 3 + prompts[1:] + [prompts[2]]  # a group of 3 samples, then 1, then a group of 2
    completions = [torch.randint(0, 120, (n,), generator=g).tolist() for n in (3, 6, 1, 4, 2, 5)]
    seqs = make_sequences(prompts, completions)
    mb = collate(seqs, list(range(6)), pad_id=0, device=torch.device("cpu"), pack_len=pack_len)
    rows = {0: 6, 4096: 3, 14: 5}[pack_len]  # 14 tokens: both groups need two rows
    assert mb.ids.shape[0] == rows and mb.mask.shape == (6, 6)
    assert (mb.attn is None) == (mb.positions is None) == (pack_len == 0)  # unpacked: plain causal
    model.head_chunk = 3 * 120  # 3 positions per vocabulary chunk: the chunked scoring is what is checked
    with torch.no_grad():
        lp = forward_logprobs(model, mb, temperature=0.7, vocab_limit=120)
        for r, (p, c) in enumerate(zip(prompts, completions)):
            assert mb.mask[r].tolist() == [1.0] * len(c) + [0.0] * (6 - len(c))
            full = model(torch.tensor([p + c]))[0, :, :120].float() / 0.7
            ref = torch.log_softmax(full, -1)[len(p) - 1:len(p) + len(c) - 1].gather(1, torch.tensor(c)[:, None])
            assert torch.allclose(lp[r, :len(c)], ref[:, 0], atol=1e-5)
    plan = plan_micro_batches(seqs, token_budget=40, pack_len=pack_len)
    assert sorted(i for g in plan for i in g) == list(range(6))
    for idx in plan:
        _, lengths = pack_rows(seqs, idx, pack_len)
        assert max(lengths) * len(lengths) <= 40 or len(idx) == 1


def test_empty_micro_batch_and_padded_plan():
    """A rank with fewer forwards than the others runs empty ones: one padding token, nothing to learn."""
    mb = collate([], [], pad_id=7, device=torch.device("cpu"))
    assert isinstance(mb, MicroBatch) and mb.ids.tolist() == [[7, 7]] and mb.mask.sum() == 0
    assert pad_plan([[0, 1]], 3) == [[0, 1], [], []]
    seqs = make_sequences([[1, 2, 3]] * 4, [[4] * 10] * 4)
    assert plan_micro_batches(seqs, token_budget=1) == [[0], [1], [2], [3]]  # over-long: one sequence each


# ---- found by mutating batching.py (each survived the tests above) ----

def test_plans_at_exactly_the_budget_and_after_a_flush():
    seqs = make_sequences([[1, 2, 3]] * 4, [[4] * 7] * 4)  # 10 tokens each, one per row
    assert plan_micro_batches(seqs, token_budget=40) == [[0, 1, 2, 3]]  # exactly the budget fits
    assert plan_micro_batches(seqs, token_budget=20) == [[0, 1], [2, 3]]  # the count restarts after a flush


def test_a_row_fills_to_exactly_pack_len_and_holds_only_one_prompt():
    rows, _ = pack_rows(make_sequences([[1] * 5] * 3, [[4] * 3, [4] * 6, [4]]), [0, 1, 2], 14)
    assert rows == [[0, 1], [2]]  # 5 + 3 + 6 = 14 fits; + 1 would not
    # equal lengths, different prompts: never one row (the prompt is computed once for the whole row)
    mb = collate(make_sequences([[1, 2], [3, 4]], [[5], [6]]), [0, 1], 0, torch.device("cpu"), pack_len=100)
    assert mb.ids.shape[0] == 2
