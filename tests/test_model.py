"""Model parity with Hugging Face (live when transformers is installed, golden fixture always), safetensors
round trips, the KV cache, and clear errors on bad checkpoints."""
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import CONFIGS, make_model
from tooln1_min.model import KVCache, ModelConfig, Transformer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 1e-4


def _hf():
    return pytest.importorskip("transformers", reason="transformers not installed (requirements-dev.txt)")


def _padded_batch(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (4, 13), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0   # right padded
    mask[1, :5] = 0   # left padded
    mask[2, :1] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_fixture_parity(name):
    """Logits recorded from transformers (tests/make_golden.py) on right- and left-padded rows."""
    path = os.path.join(FIXTURES, f"golden_{name}")
    model = Transformer.from_pretrained(path)
    g = load_file(os.path.join(path, "golden.safetensors"))
    with torch.no_grad():
        out = model(g["input_ids"], position_ids=g["position_ids"], attention_mask=g["attention_mask"])
    valid = g["attention_mask"].bool()
    assert (out - g["logits"])[valid].abs().max().item() <= TOL


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_live_parity_padded(name, tmp_path):
    transformers = _hf()
    model = make_model(name, seed=3)
    model.save_pretrained(tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids, mask, pos = _padded_batch(model.config.vocab_size)
    with torch.no_grad():
        ours = model(ids, position_ids=pos, attention_mask=mask)
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        plain = (model(ids) - hf(input_ids=ids).logits).abs().max().item()
    assert (ours - ref)[mask.bool()].abs().max().item() <= TOL
    assert plain <= TOL
    # Our default position ids for a masked batch are HF generate's (cumsum of the mask - 1).
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask), ours)


@pytest.mark.parametrize("shard", [False, True])
def test_hf_save_then_our_load(shard, tmp_path):
    transformers = _hf()
    cfg = dict(CONFIGS["qwen2_mha_untied"])
    hf = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**cfg), dtype=torch.float32).eval()
    hf.save_pretrained(tmp_path, max_shard_size="20KB" if shard else "5GB")
    assert os.path.isfile(tmp_path / "model.safetensors.index.json") == shard
    model = Transformer.from_pretrained(str(tmp_path))
    ids = torch.randint(0, cfg["vocab_size"], (2, 10))
    with torch.no_grad():
        assert (model(ids) - hf(input_ids=ids).logits).abs().max().item() <= TOL


@pytest.mark.parametrize("shard", [False, True])
def test_our_save_then_hf_load(shard, tmp_path):
    transformers = _hf()
    model = make_model("qwen3_odd", seed=5)
    model.save_pretrained(tmp_path, max_shard_bytes=10_000 if shard else 5 * 2**30)
    assert os.path.isfile(tmp_path / "model.safetensors.index.json") == shard
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    with torch.no_grad():
        assert (model(ids) - hf(input_ids=ids).logits).abs().max().item() <= TOL


@pytest.mark.parametrize("shard", [False, True])
def test_round_trip_without_transformers(shard, tmp_path):
    model = make_model("qwen2_gqa_tied", seed=7)
    model.save_pretrained(tmp_path, max_shard_bytes=8_000 if shard else 5 * 2**30)
    files = os.listdir(tmp_path)
    assert ("model.safetensors" in files) != shard
    assert "lm_head.weight" not in model.state_dict()  # tied: HF's layout has no lm_head tensor
    again = Transformer.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    assert again.model.embed_tokens.weight.dtype == torch.bfloat16
    assert json.load(open(tmp_path / "config.json"))["torch_dtype"] == "float32"
    for k, v in model.state_dict().items():
        assert torch.equal(v.bfloat16(), again.state_dict()[k]), k


def test_packed_sequences_match_separate_forwards():
    """Two sequences in one row (positions restarting, a block-diagonal causal mask: how the trainer packs)."""
    model = make_model("qwen2_gqa_tied")
    a, b = torch.randint(0, 160, (1, 6)), torch.randint(0, 160, (1, 5))
    packed = torch.cat([a, b], dim=1)
    pos = torch.cat([torch.arange(6), torch.arange(5)])[None]
    seg = torch.tensor([0] * 6 + [1] * 5)
    mask = (torch.tril(torch.ones(11, 11, dtype=torch.bool)) & (seg[:, None] == seg[None, :]))[None]
    with torch.no_grad():
        out = model(packed, position_ids=pos, attention_mask=mask)
        ref = torch.cat([model(a), model(b)], dim=1)
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_kv_cache_prefill_and_decode_match_full_forward(name):
    """Right-padded prefill into chosen cache rows, copy_rows, then per-row decode at ragged positions."""
    model = make_model(name)
    V = model.config.vocab_size
    lens = [5, 8, 3]
    full = [torch.randint(0, V, (n + 4,)) for n in lens]  # prompt + 4 continuation tokens per row
    prompts = torch.zeros(3, max(lens), dtype=torch.long)
    for i, n in enumerate(lens):
        prompts[i, :n] = full[i][:n]
    cache = KVCache(model.config, batch_size=6, max_len=16)
    rows = torch.tensor([0, 2, 4])
    with torch.no_grad():
        model(prompts, cache=cache, cache_rows=rows)
        cache.copy_rows(rows, rows + 1)  # each prompt's cache is shared by two rows
        for step in range(4):
            ids = torch.stack([full[i // 2][lens[i // 2] + step] for i in range(6)])[:, None]
            pos = torch.tensor([lens[i // 2] + step for i in range(6)])[:, None]
            logits = model(ids, position_ids=pos, cache=cache)[:, 0]
            for i in range(6):
                n = lens[i // 2] + step + 1
                ref = model(full[i // 2][None, :n])[0, -1]
                assert (logits[i] - ref).abs().max().item() <= 1e-5


def test_attention_never_combines_a_mask_with_gqa(monkeypatch):
    """On CUDA, SDPA with both an explicit mask and enable_gqa has only the math kernel: it materialises fp32
    (B, heads, T, T) scores (GBs per row at 4k tokens) and repeats the cache per query head while decoding. Every
    masked call (padded, packed, decode) must reach SDPA without the GQA flag; unmasked causal ones may use it."""
    import torch.nn.functional as F
    calls, sdpa = [], F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, enable_gqa=False, **kw):
        calls.append((attn_mask is not None, enable_gqa))
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=enable_gqa, **kw)
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = make_model("qwen2_gqa_tied")
    ids, mask, pos = _padded_batch(160)
    with torch.no_grad():
        model(ids)                                                      # causal
        model(ids, position_ids=pos, attention_mask=mask)               # padded
        seg = torch.tensor([0] * 6 + [1] * 7)
        packed_mask = (torch.tril(torch.ones(13, 13, dtype=torch.bool)) & (seg[:, None] == seg[None, :]))[None]
        model(ids[:1], position_ids=torch.cat([torch.arange(6), torch.arange(7)])[None],
              attention_mask=packed_mask)  # packed
        cache = KVCache(model.config, batch_size=4, max_len=16)
        model(ids[:, :5], cache=cache, cache_rows=torch.arange(4))
        model(ids[:, 5:6], position_ids=torch.full((4, 1), 5), cache=cache)  # decode
    assert (False, True) in calls and (True, False) in calls and (True, True) not in calls, calls


@pytest.mark.parametrize("vocab_limit", [None, 150])
def test_head_logprobs_in_chunks_equal_full_logits(vocab_limit):
    """Scoring targets chunk by chunk (recomputed in backward) gives the log-softmax and entropy of the full logits,
    and the same gradients, whatever the chunk size."""
    from tooln1_min.grpo import token_entropy, token_logprobs
    from tooln1_min.model import head_logprobs
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 7, 16, generator=g, requires_grad=True)
    w = torch.randn(160, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, vocab_limit or 160, (3, 7), generator=g)
    logits = (h @ w.T)[..., :vocab_limit]
    want_lp, want_ent = token_logprobs(logits, targets, 0.7), token_entropy(logits, 0.7)
    (want_lp.sum() + want_ent.sum()).backward()
    want_grads = h.grad.clone(), w.grad.clone()
    for chunk in (1, 5 * 160, 10**9):  # one position per chunk, 5 per chunk, all at once
        h.grad = w.grad = None
        lp, ent = head_logprobs(h, w, targets, 0.7, vocab_limit, entropy=True, chunk=chunk)
        torch.testing.assert_close(lp, want_lp)
        torch.testing.assert_close(ent, want_ent)
        (lp.sum() + ent.sum()).backward()
        torch.testing.assert_close((h.grad, w.grad), want_grads, rtol=1e-5, atol=1e-4)  # fp32 summation order


def test_logits_at_selects_positions():
    model = make_model("qwen2_mha_untied")
    ids = torch.randint(0, 131, (3, 7))
    at = torch.tensor([6, 2, 0])
    with torch.no_grad():
        full = model(ids)
        part = model(ids, logits_at=at)
    assert part.shape == (3, 1, 131)
    assert torch.allclose(part[:, 0], full[torch.arange(3), at], atol=1e-6)
    window = torch.tensor([[4, 5, 6], [0, 2, 2], [1, 0, 3]])  # (B, K): the trainer's completion window
    with torch.no_grad():
        part = model(ids, logits_at=window)
    assert part.shape == (3, 3, 131)
    assert torch.allclose(part, full.gather(1, window[..., None].expand(-1, -1, 131)), atol=1e-5)


# ---- bad input: each a clear error naming the problem ----

def _copy_fixture(tmp_path, name="qwen2_gqa_tied"):
    dst = tmp_path / "ckpt"
    shutil.copytree(os.path.join(FIXTURES, f"golden_{name}"), dst)
    return dst


def test_missing_config_key(tmp_path):
    dst = _copy_fixture(tmp_path)
    cfg = json.load(open(dst / "config.json"))
    del cfg["hidden_size"]
    json.dump(cfg, open(dst / "config.json", "w"))
    with pytest.raises(ValueError, match="hidden_size"):
        Transformer.from_pretrained(str(dst))


def test_unknown_model_type(tmp_path):
    dst = _copy_fixture(tmp_path)
    cfg = json.load(open(dst / "config.json"))
    cfg["model_type"] = "llama4"
    json.dump(cfg, open(dst / "config.json", "w"))
    with pytest.raises(ValueError, match="llama4"):
        Transformer.from_pretrained(str(dst))


def test_missing_shard(tmp_path):
    make_model("qwen2_gqa_tied").save_pretrained(tmp_path, max_shard_bytes=8_000)
    shard = sorted(f for f in os.listdir(tmp_path) if f.endswith(".safetensors"))[1]
    os.remove(tmp_path / shard)
    with pytest.raises(FileNotFoundError, match=shard):
        Transformer.from_pretrained(str(tmp_path))


def test_unreadable_files_are_named(tmp_path):
    """A config or index that is not JSON, an index without its weight_map, a shard cut short: each error names the
    file (they were a bare JSONDecodeError, KeyError 'weight_map' and SafetensorError)."""
    make_model("qwen2_gqa_tied").save_pretrained(tmp_path, max_shard_bytes=8_000)
    index = tmp_path / "model.safetensors.index.json"
    good_index, good_config = index.read_text(), (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(good_config[:-5])
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        Transformer.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(good_config)
    index.write_text("{")
    with pytest.raises(ValueError, match=r"index\.json: not valid JSON"):
        Transformer.from_pretrained(str(tmp_path))
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match=r"index\.json: no \"weight_map\""):
        Transformer.from_pretrained(str(tmp_path))
    index.write_text(good_index)
    shard = sorted(f for f in os.listdir(tmp_path) if f.endswith(".safetensors"))[0]
    (tmp_path / shard).write_bytes((tmp_path / shard).read_bytes()[:5])
    with pytest.raises(ValueError, match=f"{shard}: not a readable safetensors file"):
        Transformer.from_pretrained(str(tmp_path))


def test_wrong_shape_and_missing_and_unknown_tensor(tmp_path):
    dst = _copy_fixture(tmp_path)
    state = load_file(dst / "model.safetensors")
    bad = dict(state)
    bad["model.layers.1.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(bad, dst / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj\.weight.*shape"):
        Transformer.from_pretrained(str(dst))
    bad = {k: v for k, v in state.items() if k != "model.norm.weight"}
    save_file(bad, dst / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensors \['model\.norm\.weight'\]"):
        Transformer.from_pretrained(str(dst))
    save_file({**state, "model.layers.9.mlp.up_proj.weight": torch.zeros(1)}, dst / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected tensor 'model\.layers\.9"):
        Transformer.from_pretrained(str(dst))


def test_untied_checkpoint_without_lm_head_is_an_error(tmp_path):
    dst = _copy_fixture(tmp_path, "qwen2_mha_untied")
    state = load_file(dst / "model.safetensors")
    del state["lm_head.weight"]
    save_file(state, dst / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight"):
        Transformer.from_pretrained(str(dst))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Transformer.from_pretrained(str(tmp_path))


def test_config_from_transformers5_rope_parameters():
    d = dict(CONFIGS["qwen2_gqa_tied"])
    del d["rope_theta"]
    d["rope_parameters"] = {"rope_theta": 123.0, "rope_type": "default"}
    assert ModelConfig.from_dict(d).rope_theta == 123.0
    d["rope_parameters"] = {"rope_theta": 123.0, "rope_type": "yarn", "factor": 4.0}
    with pytest.raises(ValueError, match="yarn"):
        ModelConfig.from_dict(d)


def test_every_query_sees_itself_in_the_training_masks():
    """A query with nothing to attend to (a left-pad position; an empty row of an explicit mask) gives NaN in
    kernels that do not zero such rows (torch's CPU SDPA happens to), and 0 * NaN leaks into real rows next layer."""
    mask = Transformer._train_mask(torch.tensor([[0, 0, 1, 1]]))
    assert mask[0, 0].diagonal().all() and not mask[0, 0, 3, 0]  # itself yes, a pad key no
    explicit = torch.zeros(1, 3, 3, dtype=torch.bool)
    explicit[0, 2, 0] = True
    mask = Transformer._train_mask(explicit)
    assert mask[0, 0].diagonal().all() and mask[0, 0, 2, 0] and not mask[0, 0, 1, 0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fused_projections_give_the_same_model(name, tmp_path):
    """fuse_projections (the sampler's copy, eval.py): the same logits, in training-style and cached forwards;
    hf_state_dict gives the checkpoint's names as views that write into the fused weights; a fused model saves the
    checkpoint it was loaded from."""
    import copy
    model = make_model(name)
    fused = copy.deepcopy(model).fuse_projections().fuse_projections()  # a second call changes nothing
    names = [n for n, _ in fused.named_parameters()]
    assert any(n.endswith("qkv_proj.weight") for n in names) and not any(".q_proj." in n for n in names)
    assert any(n.endswith("gate_up_proj.weight") for n in names) and not any(".up_proj." in n for n in names)
    assert fused.num_params() == model.num_params()
    ids, mask, pos = _padded_batch(model.config.vocab_size)
    with torch.no_grad():
        assert (fused(ids, position_ids=pos, attention_mask=mask) -
                model(ids, position_ids=pos, attention_mask=mask)).abs().max().item() <= 1e-5
        caches = [KVCache(m.config, batch_size=4, max_len=16) for m in (model, fused)]
        outs = [m(ids[:, :8], cache=c, cache_rows=torch.arange(4)) for m, c in zip((model, fused), caches)]
        step = torch.full((4, 1), 8)
        outs += [m(ids[:, 8:9], position_ids=step, cache=c) for m, c in zip((model, fused), caches)]
        assert (outs[0] - outs[1]).abs().max().item() <= 1e-5 and (outs[2] - outs[3]).abs().max().item() <= 1e-5
    views, want = fused.hf_state_dict(), model.state_dict()
    assert sorted(views) == sorted(want) and all(torch.equal(views[k], want[k]) for k in want)
    other = make_model(name, seed=5)
    with torch.no_grad():
        for k, v in other.state_dict().items():
            views[k].copy_(v)  # as dist.sync_sampler writes the policy's weights into the sampler's copy
        now = fused.hf_state_dict()
        assert all(torch.equal(now[k], v) for k, v in other.state_dict().items())
        assert (fused(ids) - other(ids)).abs().max().item() <= 1e-5
    fused.save_pretrained(str(tmp_path / "ckpt"))
    loaded = Transformer.from_pretrained(str(tmp_path / "ckpt"))
    with torch.no_grad():
        assert torch.equal(loaded(ids), other(ids))
