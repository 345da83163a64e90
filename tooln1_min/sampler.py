"""Batched rollout sampler over the model's static KV cache.

generate(model, prompts, n=5, ...) prefills each prompt once, copies its cache into its n sample rows, then decodes
all rows together, one token per step, each row at its own position. Sampling is three small pure functions
(filter, noise, pick) with no host synchronisation inside a step, so on CUDA the decode step can be captured as a
CUDA graph (torch.compile of one block and of the sampling for fused kernels, then a hand-captured
torch.cuda.CUDAGraph per batch size). Finished rows are compacted away every few steps.

Randomness is counter-based: the noise for (seed, prompt index, sample index, step, token id) is a hash, not a
draw from a stateful generator. So a row's tokens depend only on its own prompt, never on its batch-mates, the chunk
size or the compaction schedule, and a seed reproduces a run exactly.
"""
import contextlib
import functools
import sys
import time
from dataclasses import dataclass, field

import torch

from .model import KVCache, Transformer, allow_recompiles, no_duck_shapes

_M32 = 0xFFFFFFFF


@dataclass
class Sample:
    token_ids: list[int]                                 # the completion, including the stop token if one ended it
    logprobs: list[float] = field(default_factory=list)  # per token, under the distribution sampled from
    finish_reason: str = "length"                        # "stop" or "length"


def _mul32(x, c: int):
    """x * c mod 2**32 for tensors holding 32-bit values. A constant >= 2**31 is written as its signed 32-bit
    equal (same low 32 bits): Triton rejects 0x9E3779B1 against an index inductor keeps in int32, and an int32
    product that wraps still has the right low 32 bits, which the caller's mask keeps."""
    return x * (c - (1 << 32) if c >= 1 << 31 else c)


def _fmix32(x):
    """murmur3's 32-bit finaliser on int64 tensors holding 32-bit values (a cheap, well-mixed hash)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def row_keys(seed: int, prompt_index, sample_index):
    """One 32-bit key per row from (seed, prompt, sample): the row's private random stream."""
    x = _fmix32((_mul32(prompt_index, 0x9E3779B1) + (seed & _M32)) & _M32)
    return _fmix32((x ^ _mul32(sample_index, 0x27D4EB2F)) & _M32)


def gumbel_noise(keys, step, vocab: int):
    """Gumbel(0, 1) noise (B, V) from hash(row key, step, token id); step is an int or a 0-d tensor."""
    h = _fmix32((_mul32(keys, 0x165667B1) + step) & _M32)[:, None]                       # (B, 1)
    x = _fmix32((h ^ _mul32(torch.arange(vocab, device=keys.device), 0x9E3779B1)) & _M32)  # (B, V)
    return -torch.log(-torch.log(uniform_open(x)))


def uniform_open(x):
    """32-bit hashes -> uniform floats strictly inside (0, 1). 23 bits, not 24: (2**24 - 1 + 0.5) / 2**24 rounds
    to exactly 1.0 in fp32, whose Gumbel noise is +inf, and a masked (-inf) id would then win the argmax as nan."""
    return ((x >> 9).float() + 0.5) * (1.0 / 2**23)


def filter_logits(logits, temperature: float, top_k: int = 0, top_p: float = 1.0, vocab_limit: int | None = None):
    """(B, V) fp32 logits -> log-probabilities of the distribution we sample from (-inf outside the kept set)."""
    if vocab_limit is not None and vocab_limit < logits.shape[-1]:
        # Qwen pads its embedding past the tokenizer (151665 ids, 151936/152064 rows): never emit a padding id.
        logits = logits.clone()
        logits[:, vocab_limit:] = float("-inf")
    if temperature > 0:
        logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p (>= 1 token)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def pick_tokens(logprobs, keys, step, greedy: bool):
    """Gumbel-max sampling (or argmax) -> tokens (B,) and their log-probabilities (B,)."""
    scores = logprobs if greedy else logprobs + gumbel_noise(keys, step, logprobs.shape[-1])
    tokens = scores.argmax(-1)
    return tokens, logprobs.gather(-1, tokens[:, None])[:, 0]


def _sample(logits, keys, step, temperature, top_k, top_p, vocab_limit):
    logprobs = filter_logits(logits.float(), temperature, top_k, top_p, vocab_limit)
    return pick_tokens(logprobs, keys, step, greedy=temperature == 0)


def _decode_step(model, cache, tokens, pos, keys, step, temperature, top_k, top_p, vocab_limit, block_fn=None,
                 sample=_sample):
    logits = model(tokens[:, None], position_ids=pos[:, None], cache=cache, block_fn=block_fn)[:, 0]
    return sample(logits, keys, step, temperature, top_k, top_p, vocab_limit)


def _call_block(block, *args):
    return block(*args)


class _Progress:
    def __init__(self, enabled: bool, every_s: float = 10.0):
        self.enabled, self.every_s, self.last = enabled, every_s, time.time()

    def __call__(self, msg: str):
        if self.enabled and time.time() - self.last >= self.every_s:
            print(f"[sampler] {msg}", file=sys.stderr, flush=True)
            self.last = time.time()


@torch.no_grad()
def generate(model: Transformer, prompts: list[list[int]], *, n: int = 1, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop_token_ids=(), seed: int | None = None,
             vocab_limit: int | None = None, max_batch_size: int = 256, max_cache_tokens: int | None = None,
             max_len: int | None = None, prefill_tokens: int = 16384, ignore_stop: bool = False,
             compile: bool | None = None, sync_every: int | None = None, progress: bool = False,
             stream_ids: list[int] | None = None) -> list[list[Sample]]:
    """Sample n completions for each prompt (lists of token ids, ragged). Returns [prompt][sample] -> Sample.

    temperature 0 is greedy (logprobs are then the plain log-softmax). vocab_limit masks ids >= it (pass the
    tokenizer's vocab size). max_batch_size (rows) and max_cache_tokens (rows x cache length) bound memory: more
    prompts are processed in chunks; on CUDA max_cache_tokens defaults to what fits in 70% of the free memory
    (a Tool-N1 step at 7B would otherwise ask for a 300 GB cache). max_len caps prompt + completion (default: the
    model's max_position_embeddings). compile: run the decode step under torch.compile, and on CUDA replay it as
    CUDA graphs (default: on CUDA only). sync_every: steps between the host's looks at which rows finished (ending
    early, compacting): 8 on CUDA, where a look stalls the queue of kernels, 1 elsewhere, where it costs nothing and
    saves steps. ignore_stop forces max_new_tokens (benchmarks). stream_ids: each prompt's random stream (default:
    its index); data-parallel callers pass global indices so results don't depend on ranks.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_batch_size < n:  # a prompt's n samples decode together (one prefill, copied): a chunk holds them all
        raise ValueError(f"max_batch_size {max_batch_size} is smaller than n {n}: a prompt's samples decode together")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"bad sampling settings: temperature={temperature}, top_p={top_p}, top_k={top_k}")
    if not prompts:
        return []
    max_len = max_len or model.config.max_position_embeddings
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")
        if len(p) >= max_len:
            raise ValueError(f"prompt {i} has {len(p)} tokens, which leaves no room in a cache of max_len={max_len}")
    seed = 0 if seed is None else seed
    if stream_ids is None:
        stream_ids = list(range(len(prompts)))
    elif len(stream_ids) != len(prompts):
        raise ValueError(f"stream_ids has {len(stream_ids)} entries for {len(prompts)} prompts")
    device = model.model.embed_tokens.weight.device
    if compile is None:
        compile = device.type == "cuda"
    if sync_every is None:
        sync_every = 8 if device.type == "cuda" else 1
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    step_fn = _compiled_step() if compile else _decode_step
    auto_budget = max_cache_tokens is None and device.type == "cuda"
    if auto_budget:
        max_cache_tokens = cache_budget(model, device, max_batch_size)

    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths share a chunk
    per_chunk = max(1, max_batch_size // n)
    if max_cache_tokens is not None:
        longest = _cache_len(len(prompts[order[0]]), max_new_tokens, max_len)
        if max_cache_tokens < n * longest:  # a chunk holds at least one prompt's n rows: it would not fit
            raise ValueError(
                f"a KV cache of max_cache_tokens={max_cache_tokens}"
                f"{' (70% of the free GPU memory)' if auto_budget else ''} can't hold one prompt's n={n} samples: "
                f"prompt {order[0]} ({len(prompts[order[0]])} tokens) + max_new_tokens={max_new_tokens} needs "
                f"{n} x {longest} = {n * longest}; lower n or max_new_tokens, shorten the prompt, or free memory")
        per_chunk = min(per_chunk, max_cache_tokens // (n * longest))
    results: list[list[Sample] | None] = [None] * len(prompts)
    chunks = [order[i:i + per_chunk] for i in range(0, len(order), per_chunk)]
    report = _Progress(progress)
    settings = _Settings(n, max_new_tokens, temperature, top_p, top_k, set(stop_token_ids), ignore_stop, seed,
                         vocab_limit, max_len, prefill_tokens, sync_every)
    for c, idx in enumerate(chunks):
        out = _generate_chunk(model, [prompts[i] for i in idx], [stream_ids[i] for i in idx], settings, step_fn,
                              device, lambda m: report(f"chunk {c + 1}/{len(chunks)}: {m}"))
        for i, samples in zip(idx, out):
            results[i] = samples
    return results


def _cache_len(prompt_len: int, max_new: int, max_len: int) -> int:
    """Cache length for a chunk: its longest prompt + max_new, 16-aligned (fused attention kernels want the mask's
    rows aligned), at most max_len."""
    return min(-(-(prompt_len + max_new) // 16) * 16, max_len)


def cache_budget(model, device, rows: int, fraction: float = 0.7) -> int:
    """KV-cache tokens that fit in `fraction` of the GPU memory free now (the allocator's cached blocks count as
    free), after the per-row decode temporaries (fp32 logits, log-probs and scores over the vocabulary, in each
    batch size's captured graph)."""
    free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    c = model.config
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * model.model.embed_tokens.weight.itemsize
    free -= rows * c.vocab_size * 32
    return max(int(fraction * free) // per_token, 1)


def _prefill(model, cache, prompts, rows, prefill_tokens, device):
    """Right-padded batched prefill into cache rows `rows`; returns the last prompt position's logits (P, V)."""
    last = []
    start = 0
    while start < len(prompts):
        width = len(prompts[start])  # prompts arrive longest first, so the first row sets the padded width
        count = max(1, prefill_tokens // width)
        batch = prompts[start:start + count]
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, :len(p)] = torch.tensor(p)
        lens = torch.tensor([len(p) for p in batch], device=device)
        logits = model(ids.to(device), cache=cache, cache_rows=rows[start:start + count], logits_at=lens - 1)
        last.append(logits[:, 0].float())
        start += count
    return torch.cat(last)


@dataclass(frozen=True)
class _Settings:
    """One generate call's settings, shared by its chunks (see generate's arguments)."""
    n: int
    max_new: int
    temperature: float
    top_p: float
    top_k: int
    stops: set
    ignore_stop: bool
    seed: int
    vocab_limit: int | None
    max_len: int
    prefill_tokens: int
    sync_every: int


def _generate_chunk(model, prompts, prompt_ids, cfg: _Settings, step_fn, device, report):
    """Sample cfg.n completions for each prompt of one chunk, all rows in one KV cache."""
    n, max_new, temperature, top_p, top_k = cfg.n, cfg.max_new, cfg.temperature, cfg.top_p, cfg.top_k
    vocab_limit, sync_every = cfg.vocab_limit, cfg.sync_every
    P, B = len(prompts), len(prompts) * n
    L = _cache_len(max(len(p) for p in prompts), max_new, cfg.max_len)
    dtype = model.model.embed_tokens.weight.dtype
    cache = KVCache(model.config, B, L, dtype=dtype, device=device)
    wrap = _graph_wrapper(device) if step_fn is not _decode_step else None
    if wrap:
        step_fn = wrap(step_fn)  # graphs live as long as this chunk's cache
    first_rows = torch.arange(P, device=device) * n
    logits = _prefill(model, cache, prompts, first_rows, cfg.prefill_tokens, device)  # (P, V)
    for j in range(1, n):  # the n samples of a prompt share its prefilled prefix
        cache.copy_rows(first_rows, first_rows + j)

    row = torch.arange(B, device=device)         # original row of each live slot (changes on compaction)
    keys = row_keys(cfg.seed, torch.tensor(prompt_ids, device=device).repeat_interleave(n), row % n)
    prompt_len = torch.tensor([len(p) for p in prompts], device=device).repeat_interleave(n)
    room = (L - prompt_len).clamp(max=max_new)   # tokens each row may still produce
    out_tokens = torch.zeros(B, max_new, dtype=torch.long, device=device)
    out_logprobs = torch.zeros(B, max_new, dtype=torch.float, device=device)
    n_out = torch.zeros(B, dtype=torch.long, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(sorted(cfg.stops) if cfg.stops and not cfg.ignore_stop else [-1], device=device)

    # The first token, sampled eagerly from the prefill logits, 64 rows at a time: the (rows, vocab) int64 hash
    # temporaries of the noise would otherwise take GBs at Qwen's vocabulary (rows are independent: same result).
    first = logits.repeat_interleave(n, 0)
    tokens, lps = map(torch.cat, zip(*(_sample(first[s:s + 64], keys[s:s + 64], 0, temperature, top_k, top_p,
                                               vocab_limit) for s in range(0, B, 64))))
    pos = prompt_len.clone()
    step_t = torch.zeros((), dtype=torch.long, device=device)  # the step on the device: no host copy per step
    live = torch.ones(B, dtype=torch.bool, device=device)
    for step in range(max_new):
        # Record this step's token for live rows; a row ends on a stop id or when it runs out of room.
        out_tokens[row, step] = tokens
        out_logprobs[row, step] = lps
        n_out[row] += live.long()
        hit = live & torch.isin(tokens, stop_ids)
        stopped[row] |= hit
        live = live & ~hit & (step + 1 < room[row])
        if step + 1 == max_new:
            break
        if (step + 1) % sync_every == 0:  # the only host syncs: end early, compact finished rows away
            alive = int(live.sum())
            report(f"step {step + 1}/{max_new}, {alive}/{B} rows live")
            if alive == 0:
                break
            if alive <= live.numel() // 2:
                keep = _bucket(live, alive)
                cache.keep_rows(keep)
                row, keys, tokens, pos, live = row[keep], keys[keep], tokens[keep], pos[keep], live[keep]
        step_t = step_t + 1
        tokens, lps = step_fn(model, cache, tokens, pos, keys, step_t, temperature, top_k, top_p, vocab_limit)
        pos = (pos + 1).clamp(max=L - 1)  # rows out of room are dead; keep their writes in bounds

    n_out, stopped = n_out.tolist(), stopped.tolist()
    out_tokens, out_logprobs = out_tokens.tolist(), out_logprobs.tolist()
    return [[Sample(out_tokens[r][:n_out[r]], out_logprobs[r][:n_out[r]], "stop" if stopped[r] else "length")
             for r in range(p * n, (p + 1) * n)] for p in range(P)]


def _bucket(live, alive: int):
    """Slots to keep after compaction: every live slot, padded with dead ones up to a power of two, so a
    compiled/captured decode step sees few distinct batch sizes."""
    size = min(live.numel(), 1 << (alive - 1).bit_length())
    order = torch.argsort((~live).to(torch.int8), stable=True)  # live slots first, original order kept
    return order[:size].sort().values


_COMPILED = None


def _compiled_step():
    """The decode step with fused kernels from torch.compile, falling back to eager with a warning if compilation
    fails on this machine: a slow rollout beats a crashed training run.

    Two compiled pieces, not the whole step: one transformer block, called for every layer (the blocks differ only
    in their weights, which are the graph's inputs, so one graph serves them all), and the sampling over the
    vocabulary. The glue between them (embedding, RoPE tables, the final norm and lm_head) runs eagerly. Compiling
    the whole step unrolled 24-28 blocks into one graph: 70-90 s of compilation per process on an H200 (on CPU, a
    24-layer model's first compiled generate: 47.6 s whole, 8.5 s by block); the CUDA graph captured on top
    (_GraphedStep, per chunk) replays the glue's few kernels with the rest, so eager glue costs no launches.
    dynamic=True: one compiled graph serves every batch size and cache length (chunks, compaction buckets, prompt
    lengths all vary during training; with static shapes each new one would recompile, and after torch's recompile
    limit the step silently runs eagerly)."""
    global _COMPILED
    if _COMPILED is None:
        allow_recompiles(64)  # greedy/sampled, vocab_limit, top-k/p, one row: each a variant of the same step
        compiled = functools.partial(_decode_step, block_fn=torch.compile(_call_block, dynamic=True),
                                     sample=torch.compile(_sample, dynamic=True))

        def step(*args):
            global _COMPILED
            if _COMPILED is _decode_step:  # an earlier call failed to compile: don't try again on every step
                return _decode_step(*args)
            try:
                with no_duck_shapes():  # else a first batch of 64 rows at head_dim 64 compiles twice
                    return compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure
                if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                    raise  # a capture failure, not a compile one: _GraphedStep handles it
                print(f"[sampler] torch.compile of the decode step failed ({type(e).__name__}: {e}); "
                      "continuing eagerly (generate(..., compile=False) skips this)", file=sys.stderr)
                _COMPILED = _decode_step
                return _decode_step(*args)
        _COMPILED = step
    return _COMPILED


def _graph_wrapper(device):
    """What wraps a compiled decode step for one chunk: CUDA graphs on CUDA, nothing elsewhere."""
    return _GraphedStep if device.type == "cuda" else None


class _GraphedStep:
    """CUDA graphs of a decode step, one per batch size, alive for one chunk (one KV cache).

    A graph replays the step's kernels with one launch, reading its inputs from fixed buffers and writing the cache
    at the addresses it was captured with: the chunk's cache, which compaction shrinks in place (a new batch size,
    so a new graph; sizes only fall). Capturing per chunk and dropping the graphs with the cache keeps their number
    bounded over a training run. The step is idempotent for given inputs (it writes the same K/V at the same
    positions), so the warm-up runs before capture change nothing. A capture failure falls back to the plain step
    for the rest of the process (as a failed compile does), not to be tried again in every chunk.
    """

    captured = replayed = 0  # totals over the process (for tests and benchmarks)
    capture_seconds = 0.0  # wall time of captures and their warm-up steps (benchmarks leave it out of a step's)
    failed = False  # set on the class by a failed capture

    def __init__(self, fn):
        self.fn, self.graphs = fn, {}

    def __call__(self, model, cache, tokens, pos, keys, step_t, *consts):
        if _GraphedStep.failed:
            return self.fn(model, cache, tokens, pos, keys, step_t, *consts)
        # Streams and captures belong to the current device: make it the model's (cuda:1 with cuda:0 current).
        with torch.cuda.device(tokens.device) if tokens.is_cuda else contextlib.nullcontext():
            return self._step(model, cache, tokens, pos, keys, step_t, *consts)

    def _step(self, model, cache, tokens, pos, keys, step_t, *consts):
        B = tokens.shape[0]
        if B not in self.graphs:
            self.graphs.clear()  # batch sizes only fall within a chunk: the bigger graphs never replay again
            stream = torch.cuda.current_stream() if torch.cuda.is_available() else None
            t = time.perf_counter()
            try:
                self.graphs[B] = self._capture(model, cache, (tokens, pos, keys, step_t), consts)
                if stream is not None:
                    torch.cuda.synchronize()
                _GraphedStep.capture_seconds += time.perf_counter() - t
            except Exception as e:  # noqa: BLE001 - e.g. an op that cannot be captured on this torch version
                if stream is not None:  # a failed capture_end can leave the capture stream current
                    torch.cuda.set_stream(stream)
                print(f"[sampler] CUDA graph capture failed ({type(e).__name__}: {e}); decoding without graphs "
                      "from now on", file=sys.stderr)
                _GraphedStep.failed = True
                return self.fn(model, cache, tokens, pos, keys, step_t, *consts)
        graph, inputs, outputs = self.graphs[B]
        for buf, x in zip(inputs, (tokens, pos, keys, step_t)):
            buf.copy_(x)
        graph.replay()
        _GraphedStep.replayed += 1
        return outputs  # overwritten by the next replay: the caller copies them out before its next call

    def _capture(self, model, cache, args, consts):
        inputs = tuple(x.clone() for x in args)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (compilation for a new shape happens here, not under capture)
            for _ in range(2):
                self.fn(model, cache, *inputs, *consts)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.fn(model, cache, *inputs, *consts)
        _GraphedStep.captured += 1
        return graph, inputs, outputs
