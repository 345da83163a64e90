"""Sampler correctness on CPU: greedy vs an uncached reference, logprobs vs teacher forcing, batch invariance,
stops, limits, seeds, top-k/top-p, padded vocabulary, bad input."""
import math

import pytest
import torch

from helpers import make_model, needs_cxx
from tooln1_min.sampler import filter_logits, generate, gumbel_noise, row_keys

TINY = dict(model_type="qwen2", vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6)


@pytest.fixture(scope="module")
def model():
    return make_model(TINY, seed=1, std=0.3).eval()


def _prompts(seed=0, lens=(3, 7, 1, 5)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 90, (n,), generator=g).tolist() for n in lens]


def test_greedy_equals_uncached_reference(model):
    prompts = _prompts()
    out = generate(model, prompts, n=3, max_new_tokens=9, temperature=0)
    for p, samples in zip(prompts, out):
        seq = list(p)
        for _ in range(9):  # argmax of a full forward re-run at every step
            with torch.no_grad():
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
        for s in samples:
            assert s.token_ids == seq[len(p):] and s.finish_reason == "length"


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_teacher_forced(model, temperature):
    prompts = _prompts(1)
    out = generate(model, prompts, n=2, max_new_tokens=8, temperature=temperature, seed=3)
    worst = 0.0
    for p, samples in zip(prompts, out):
        for s in samples:
            ids = torch.tensor([p + s.token_ids])
            with torch.no_grad():
                ref = torch.log_softmax(model(ids)[0, len(p) - 1:-1].float() / temperature, -1)
            ref = ref.gather(-1, torch.tensor(s.token_ids)[:, None])[:, 0]
            worst = max(worst, (ref - torch.tensor(s.logprobs)).abs().max().item())
    assert worst <= 1e-5, worst


def test_batch_invariance_and_seed_reproducibility(model):
    """A row depends only on (seed, its prompt, its prompt's index, its sample index): not on batch-mates,
    chunking or compaction."""
    prompts = _prompts(2, lens=(4, 9, 2, 6, 3))
    kw = dict(n=2, max_new_tokens=10, temperature=1.0, seed=11)
    full = generate(model, prompts, **kw)  # on CPU the host looks at finished rows every step (sync_every=1)
    again = generate(model, prompts, sync_every=8, **kw)  # CUDA's default: other compaction, more dead-row steps
    chunked = generate(model, prompts, max_batch_size=2, sync_every=3, **kw)
    for a, b, c in zip(full, again, chunked):
        for sa, sb, sc in zip(a, b, c):
            assert sa.token_ids == sb.token_ids == sc.token_ids and sa.logprobs == sb.logprobs
    # the first prompt alone (same index 0), and with other batch-mates behind it
    assert [s.token_ids for s in generate(model, prompts[:1], **kw)[0]] == [s.token_ids for s in full[0]]
    mates = generate(model, prompts[:1] + _prompts(9, lens=(12, 1, 5)), **kw)
    assert [s.token_ids for s in mates[0]] == [s.token_ids for s in full[0]]
    greedy = generate(model, prompts, n=2, max_new_tokens=10, temperature=0)
    for p, g in zip(prompts, greedy):
        assert generate(model, [p], max_new_tokens=10, temperature=0)[0][0].token_ids == g[0].token_ids
    other = generate(model, prompts, **{**kw, "seed": 12})
    assert any(a.token_ids != b.token_ids for x, y in zip(full, other) for a, b in zip(x, y))
    assert any(x[0].token_ids != x[1].token_ids for x in full)  # each sample has its own random stream


def test_max_cache_tokens_bounds_every_chunk_and_names_a_bound_too_small(model, monkeypatch):
    """max_cache_tokens splits the prompts into chunks whose caches fit (same samples as one chunk); a bound below
    one prompt's n rows is refused by name (it used to run that chunk anyway: past the bound, an OOM on a GPU)."""
    from tooln1_min import sampler
    prompts = _prompts(4, lens=(4, 9, 2, 6, 3))
    kw = dict(n=2, max_new_tokens=10, temperature=1.0, seed=5)
    sizes = []

    class Recording(sampler.KVCache):
        def __init__(self, config, batch_size, max_len, **kw):
            sizes.append(batch_size * max_len)
            super().__init__(config, batch_size, max_len, **kw)

    monkeypatch.setattr(sampler, "KVCache", Recording)
    bounded = generate(model, prompts, max_cache_tokens=2 * 2 * 32, **kw)  # two prompts' rows of 32 at most
    assert len(sizes) >= 3 and max(sizes) <= 128, sizes
    free = generate(model, prompts, **kw)
    assert [[s.token_ids for s in g] for g in bounded] == [[s.token_ids for s in g] for g in free]
    with pytest.raises(ValueError, match=r"max_cache_tokens=40 can't hold one prompt's n=2 samples: prompt 1 "
                                         r"\(9 tokens\) \+ max_new_tokens=10 needs 2 x 32 = 64"):
        generate(model, prompts, max_cache_tokens=40, **kw)


def test_stop_ids_and_max_new_tokens(model):
    prompts = _prompts(3)
    free = generate(model, prompts, n=2, max_new_tokens=12, temperature=1.0, seed=5)
    stop = free[1][0].token_ids[4]  # a token this row emits at its 5th step
    out = generate(model, prompts, n=2, max_new_tokens=12, temperature=1.0, seed=5, stop_token_ids=[stop],
                   sync_every=2)
    for f_samples, samples in zip(free, out):
        for f, s in zip(f_samples, samples):
            if stop in f.token_ids:
                cut = f.token_ids.index(stop) + 1
                assert s.token_ids == f.token_ids[:cut] and s.finish_reason == "stop"
                assert len(s.logprobs) == cut
            else:
                assert s.token_ids == f.token_ids and s.finish_reason == "length"
    forced = generate(model, prompts, n=2, max_new_tokens=12, temperature=1.0, seed=5, stop_token_ids=[stop],
                      ignore_stop=True)
    assert all(len(s.token_ids) == 12 for x in forced for s in x)
    assert all(len(s.token_ids) == 3 for x in generate(model, prompts, max_new_tokens=3) for s in x)


def test_max_len_caps_completion(model):
    out = generate(model, [[1] * 5, [2] * 2], max_new_tokens=10, max_len=8, temperature=0)
    assert [len(x[0].token_ids) for x in out] == [3, 6]


def test_top_k_top_p_and_vocab_limit_never_leave_the_kept_set(model):
    prompts = _prompts(4)
    for kw in [dict(top_k=3), dict(top_p=0.5), dict(top_k=5, top_p=0.8), dict(vocab_limit=40)]:
        out = generate(model, prompts, n=4, max_new_tokens=6, temperature=1.5, seed=2, **kw)
        for p, samples in zip(prompts, out):
            for s in samples:
                for t, tok in enumerate(s.token_ids):
                    with torch.no_grad():
                        logits = model(torch.tensor([p + s.token_ids[:t]]))[0, -1:].float()
                    kept = filter_logits(logits, 1.5, kw.get("top_k", 0), kw.get("top_p", 1.0),
                                         kw.get("vocab_limit"))[0]
                    assert math.isfinite(kept[tok].item()), (kw, tok)
                    assert abs(kept[tok].item() - s.logprobs[t]) < 1e-5
                    if "vocab_limit" in kw:
                        assert tok < 40


def test_filter_logits_reference():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    lp = filter_logits(logits, 1.0, top_k=2)
    assert torch.isinf(lp[0, 2:]).all() and torch.allclose(lp[0, :2].exp().sum(), torch.tensor(1.0))
    p = logits.softmax(-1)[0]
    lp = filter_logits(logits, 1.0, top_p=float(p[0]) + 1e-4)  # needs the first two tokens
    assert torch.isfinite(lp[0, :2]).all() and torch.isinf(lp[0, 2:]).all()
    lp = filter_logits(logits, 1.0, top_p=0.01)  # always keeps at least the top token
    assert torch.isfinite(lp[0, 0]) and torch.isinf(lp[0, 1:]).all()


def test_gumbel_noise_is_well_distributed():
    keys = row_keys(0, torch.arange(64), torch.zeros(64, dtype=torch.long))
    g = gumbel_noise(keys, 0, 2000)
    assert abs(g.mean().item() - 0.5772) < 0.02 and abs(g.var().item() - math.pi ** 2 / 6) < 0.05
    # sampling frequencies follow the distribution
    probs = torch.tensor([0.5, 0.3, 0.2])
    keys = row_keys(1, torch.arange(20000), torch.zeros(20000, dtype=torch.long))
    picks = (probs.log()[None] + gumbel_noise(keys, 0, 3)).argmax(-1)
    freq = torch.bincount(picks, minlength=3).float() / 20000
    assert torch.allclose(freq, probs, atol=0.015)


def _fmix32_ref(x: int) -> int:  # murmur3's finaliser on Python ints: the hash the sampler's streams are defined by
    x ^= x >> 16
    x = x * 0x85EBCA6B & 0xFFFFFFFF
    x ^= x >> 13
    x = x * 0xC2B2AE35 & 0xFFFFFFFF
    return x ^ x >> 16


def test_hash_matches_murmur3_with_int32_safe_constants():
    """Regression (first GPU run, H200): Triton rejected the constant 0x9E3779B1 against an index inductor kept in
    int32, so torch.compile of the decode step failed and the sampler ran eagerly. The constants are now their
    signed 32-bit equals; the hashes (hence every sampled token) must stay murmur3's, also for int32 inputs."""
    from tooln1_min.sampler import _fmix32, _mul32
    g = torch.Generator().manual_seed(0)
    xs = torch.cat([torch.randint(0, 2**32, (2000,), generator=g), torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1])])
    assert _fmix32(xs).tolist() == [_fmix32_ref(x) for x in xs.tolist()]
    idx = torch.arange(0, 2**31 - 1, 2**31 // 997, dtype=torch.int32)
    want = [i * 0x9E3779B1 & 0xFFFFFFFF for i in idx.tolist()]
    assert (_mul32(idx, 0x9E3779B1).long() & 0xFFFFFFFF).tolist() == want  # an int32 product wraps: low bits kept
    keys = row_keys(7, torch.tensor([0, 5, 70000]), torch.tensor([0, 3, 1]))
    ref = [_fmix32_ref(_fmix32_ref((p * 0x9E3779B1 + 7) & 0xFFFFFFFF) ^ (s * 0x27D4EB2F & 0xFFFFFFFF))
           for p, s in [(0, 0), (5, 3), (70000, 1)]]
    assert keys.tolist() == ref
    from tooln1_min.sampler import uniform_open
    h = [_fmix32_ref((k * 0x165667B1 + 9) & 0xFFFFFFFF) for k in ref]
    noise = gumbel_noise(keys, 9, 50)
    for r, hr in enumerate(h):
        u = uniform_open(torch.tensor([_fmix32_ref(hr ^ (v * 0x9E3779B1 & 0xFFFFFFFF)) for v in range(50)]))
        assert torch.equal(noise[r], -torch.log(-torch.log(u)))


def test_uniform_stays_inside_the_open_interval_at_the_extremes():
    """Regression: with 24 bits the largest hash gave u == 1.0 in fp32, Gumbel noise +inf, and a padding id past
    vocab_limit (logprob -inf) won the argmax as nan, about once per 2**24 draws (a crash in GRPO step 253)."""
    from tooln1_min.sampler import pick_tokens, uniform_open
    x = torch.tensor([0, 1, 2**8, 2**9 - 1, 2**32 - 2**9, 2**32 - 1], dtype=torch.long)
    u = uniform_open(x)
    assert u.dtype == torch.float32 and bool((u > 0).all()) and bool((u < 1).all())
    g = -torch.log(-torch.log(u))
    assert bool(torch.isfinite(g).all())
    logprobs = torch.tensor([[0.0, float("-inf")]]).log_softmax(-1)
    scores = logprobs + torch.stack([g[:1], g[-1:]], -1)  # the largest possible noise on the masked id
    assert scores.argmax(-1).item() == 0
    keys = row_keys(0, torch.arange(1), torch.zeros(1, dtype=torch.long))
    assert pick_tokens(logprobs, keys, 0, False)[0].item() == 0


def test_bad_input(model):
    assert generate(model, [], max_new_tokens=4) == []
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, [[1, 2], []], max_new_tokens=4)
    with pytest.raises(ValueError, match="prompt 0 has 9 tokens"):
        generate(model, [[1] * 9], max_new_tokens=4, max_len=9)
    with pytest.raises(ValueError, match="n must be >= 1"):
        generate(model, [[1]], n=0, max_new_tokens=4)
    with pytest.raises(ValueError, match="max_batch_size 2 is smaller than n 5"):  # it used to run 5 rows anyway
        generate(model, [[1]], n=5, max_new_tokens=4, max_batch_size=2)


def test_keep_rows_compacts_in_place():
    """Compaction keeps the buffers' storage (a captured decode step reuses the same addresses)."""
    from tooln1_min.model import KVCache
    cache = KVCache(make_model(TINY).config, batch_size=5, max_len=4)
    for i, buf in enumerate(cache.k + cache.v):
        buf.copy_(torch.arange(5.0).view(5, 1, 1, 1).expand_as(buf) + 10 * i)
    ptrs = [buf.data_ptr() for buf in cache.k + cache.v]
    cache.keep_rows(torch.tensor([1, 3, 4]))
    assert cache.batch_size == 3 and [buf.data_ptr() for buf in cache.k + cache.v] == ptrs
    for i, buf in enumerate(cache.k + cache.v):
        assert buf.shape[0] == 3 and buf[:, 0, 0, 0].tolist() == [1 + 10 * i, 3 + 10 * i, 4 + 10 * i]


@needs_cxx
def test_compiled_decode_step_equals_eager_and_compiles_once():
    """The compile=True path (CUDA graphs on GPU; plain Inductor here) gives the eager tokens and logprobs; one
    compiled block serves every layer, and varying batch sizes, cache lengths and compaction reuse the compiled
    block and sampling (plus one variant each for a single row): with static shapes every new one would recompile
    until torch's limit, then silently run eagerly."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from tooln1_min import sampler
    model = make_model({**TINY, "num_hidden_layers": 5}, seed=1, std=0.3).eval().fuse_projections()  # as trained
    torch._dynamo.reset()
    counters.clear()
    sampler._COMPILED = None
    try:
        for call, lens in enumerate([(4, 9, 2, 6, 3), (11, 1, 5), (2, 3)]):
            kw = dict(n=3, max_new_tokens=6 + 4 * call, temperature=0.7, seed=call, sync_every=2,
                      stop_token_ids=list(range(0, 96, 9)))
            eager = generate(model, _prompts(call, lens), compile=False, **kw)
            compiled = generate(model, _prompts(call, lens), compile=True, **kw)
            for a, b in zip(eager, compiled):
                for x, y in zip(a, b):
                    assert x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
                    assert max((abs(p - q) for p, q in zip(x.logprobs, y.logprobs)), default=0) <= 1e-5
        assert sampler._COMPILED is not sampler._decode_step, "compilation failed and fell back to eager"
        # the block and the sampling, each at most twice (one row): a graph per layer would be 5 on its own
        assert 2 <= counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])
    finally:
        sampler._COMPILED = None
        torch._dynamo.reset()


@needs_cxx
def test_a_first_batch_as_wide_as_head_dim_compiles_once(model):
    """torch.compile's duck shaping gave a first batch of head_dim rows (64 rows at Qwen2.5-0.5B's head_dim 64) one
    symbol for both sizes, so that graph served only batch == head_dim and the next batch compiled again."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from tooln1_min import sampler
    assert model.config.head_dim == 8
    torch._dynamo.reset()
    counters.clear()
    sampler._COMPILED = None
    try:
        for call, rows in enumerate((8, 3, 5, 6)):  # no 1 or 2 rows: 0/1 specialise, 2 is the kv head count
            generate(model, _prompts(call, lens=[3 + (i * 5) % 6 for i in range(rows)]), n=1, max_new_tokens=6,
                     temperature=0.7, compile=True, sync_every=100)
        assert sampler._COMPILED is not sampler._decode_step, "compilation failed and fell back to eager"
        assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])  # the block and the sampling
    finally:
        sampler._COMPILED = None
        torch._dynamo.reset()


def test_cache_budget_from_free_gpu_memory(monkeypatch, model):
    """The CUDA default for max_cache_tokens (CI has no GPU: the memory queries are stood in for)."""
    from tooln1_min.sampler import cache_budget
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1 * 2**30)
    c = model.config
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4  # fp32 test model
    free = 12 * 2**30 - 8 * c.vocab_size * 32
    assert cache_budget(model, "cuda", rows=8) == int(0.7 * free) // per_token
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (0, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    assert cache_budget(model, "cuda", rows=8) == 1  # nothing free: one row at a time, never zero or negative


def test_first_token_sampled_in_row_slices_is_batch_invariant(model):
    """More than 64 rows: the first token is sampled slice by slice, and must not depend on the slicing."""
    prompts = _prompts(5, lens=[1 + i % 7 for i in range(35)])  # 70 rows
    kw = dict(n=2, max_new_tokens=2, temperature=1.0, seed=4)
    together, apart = generate(model, prompts, **kw), generate(model, prompts, max_batch_size=6, **kw)
    assert [[s.token_ids for s in g] for g in together] == [[s.token_ids for s in g] for g in apart]
    assert len({s.token_ids[0] for g in together for s in g}) > 5  # sampled, not one repeated token


def test_graphed_step_plumbing_with_a_cpu_stand_in(model, monkeypatch):
    """The CUDA-graph wrapper's contract, checked on CPU: a replay reads fixed input buffers and overwrites the same
    output tensors in place, so the loop must copy each step's outputs out before the next call (and compaction
    must not keep using a stale graph). A stand-in graph that recomputes into its captured outputs mimics that."""
    from tooln1_min import sampler

    class FakeGraph:
        def __init__(self, fn, args, outputs):
            self.fn, self.args, self.outputs = fn, args, outputs

        def replay(self):
            for out, new in zip(self.outputs, self.fn(*self.args)):
                out.copy_(new)

    class StandIn(sampler._GraphedStep):
        def _capture(self, model, cache, args, consts):
            inputs = tuple(x.clone() for x in args)
            outputs = self.fn(model, cache, *inputs, *consts)
            sampler._GraphedStep.captured += 1
            return FakeGraph(self.fn, (model, cache, *inputs, *consts), outputs), inputs, outputs

    prompts = _prompts(3, lens=(4, 9, 2, 6, 3))
    kw = dict(n=3, max_new_tokens=12, temperature=0.8, seed=2, stop_token_ids=list(range(0, 96, 4)), sync_every=2)
    want = generate(model, prompts, **kw)
    monkeypatch.setattr(sampler, "_graph_wrapper", lambda device: StandIn)
    monkeypatch.setattr(sampler, "_compiled_step", lambda: lambda *a: sampler._decode_step(*a))  # "compiled"
    captured, replayed = sampler._GraphedStep.captured, sampler._GraphedStep.replayed
    got = generate(model, prompts, compile=True, **kw)
    assert [[(s.token_ids, s.logprobs, s.finish_reason) for s in g] for g in got] == \
        [[(s.token_ids, s.logprobs, s.finish_reason) for s in g] for g in want]
    assert sampler._GraphedStep.captured - captured >= 2  # compaction made a smaller batch: a second graph
    assert sampler._GraphedStep.replayed - replayed > sampler._GraphedStep.captured - captured


def test_failed_compilation_falls_back_once(model, monkeypatch, capsys):
    """A compiler failure costs one warning and eager decoding for the rest of the process, not a retry per step."""
    from tooln1_min import sampler
    calls = []

    def broken_compile(fn, **kw):
        def compiled(*args):
            calls.append(1)
            raise RuntimeError("no compiler here")
        return compiled
    monkeypatch.setattr(sampler, "_COMPILED", None)
    monkeypatch.setattr(sampler.torch, "compile", broken_compile)
    kw = dict(n=2, max_new_tokens=6, temperature=0.7, seed=1)
    got = generate(model, _prompts(), compile=True, **kw)
    want = generate(model, _prompts(), **kw)
    assert [[s.token_ids for s in g] for g in got] == [[s.token_ids for s in g] for g in want]
    assert len(calls) == 1 and capsys.readouterr().err.count("failed") == 1


def test_failed_graph_capture_falls_back_once(model, monkeypatch, capsys):
    """A CUDA graph capture failure costs one warning and graph-less decoding for the rest of the process, not a
    failed capture (and its warm-up steps) in every chunk of every call."""
    from tooln1_min import sampler
    tries = []

    class Uncapturable(sampler._GraphedStep):
        def _capture(self, model, cache, args, consts):
            tries.append(1)
            raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(sampler._GraphedStep, "failed", False)  # restored after the test
    monkeypatch.setattr(sampler, "_graph_wrapper", lambda device: Uncapturable)
    monkeypatch.setattr(sampler, "_compiled_step", lambda: lambda *a: sampler._decode_step(*a))
    kw = dict(n=2, max_new_tokens=6, temperature=0.7, seed=1, max_batch_size=2)  # one prompt a chunk
    got = generate(model, _prompts(), compile=True, **kw)
    got += generate(model, _prompts(), compile=True, **kw)
    want = generate(model, _prompts(), **kw)
    assert [[s.token_ids for s in g] for g in got] == [[s.token_ids for s in g] for g in want + want]
    assert len(tries) == 1 and capsys.readouterr().err.count("capture failed") == 1


# ---- found by mutating sampler.py (each survived the tests above) ----

def test_top_k_keeps_k_tokens():
    lp = filter_logits(torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]), 1.0, top_k=2)
    assert torch.isfinite(lp[0, :2]).all() and torch.isinf(lp[0, 2:]).all()


def test_a_row_cut_off_for_room_ends_as_length_even_if_a_stop_id_follows(model):
    """With CUDA's sync_every=8 dead rows keep decoding until the next look: a stop id they draw after running out
    of room must not turn their "length" into "stop" (the truncation rate would be wrong)."""
    prompts = [[1] * 5, [2] * 2]
    kw = dict(max_new_tokens=10, max_len=8, temperature=0, sync_every=8)
    free = generate(model, prompts, **kw)
    stops = set(range(96)) - set(free[0][0].token_ids) - set(free[1][0].token_ids)  # every id not emitted in room
    out = generate(model, prompts, stop_token_ids=stops, **kw)
    assert [g[0].finish_reason for g in out] == ["length", "length"]
