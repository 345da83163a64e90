"""A Qwen2 / Qwen2.5 / Qwen3 (dense) decoder in plain PyTorch, numerically equal to Hugging Face's.

Parameter names are Hugging Face's (`model.layers.{i}.self_attn.q_proj.weight`, ...), so checkpoints load and save
as ordinary HF folders with no renaming table. One forward serves three uses:
  training   model(input_ids, position_ids=None, attention_mask=None)            -> logits (B, T, V)
  prefill    model(input_ids, cache=cache, cache_rows=rows)  writes K/V of rows at positions 0..T-1
  decode     model(input_ids (B, 1), position_ids (B, 1), cache=cache)  writes K/V at each row's own position
This file knows nothing about distribution or sampling.
"""
import contextlib
import json
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.checkpoint import checkpoint


@dataclass
class ModelConfig:
    model_type: str                 # "qwen2" (Qwen2, Qwen2.5) or "qwen3" (dense)
    vocab_size: int                 # embedding rows; padded past the tokenizer (151936 / 152064 for Qwen2.5)
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = True     # q/k/v bias: always in Qwen2, optional (default off) in Qwen3
    qk_norm: bool = False           # Qwen3: per-head RMSNorm on q and k before RoPE
    max_position_embeddings: int = 32768
    raw: dict = field(default_factory=dict, repr=False)  # the config.json as read, written back on save

    @classmethod
    def from_dict(cls, d: dict, source: str = "config.json") -> "ModelConfig":
        mt = d.get("model_type")
        if mt not in ("qwen2", "qwen3"):
            raise ValueError(f"{source}: model_type {mt!r} is not supported (expected 'qwen2' or 'qwen3')")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if key not in d:
                raise ValueError(f"{source}: missing required key {key!r}")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"{source}: hidden_act {d['hidden_act']!r} is not supported (Qwen uses 'silu')")
        if d.get("use_sliding_window"):
            raise ValueError(f"{source}: use_sliding_window=true is not supported (Qwen2.5 releases ship false)")
        rope = d.get("rope_scaling") or d.get("rope_parameters") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise ValueError(f"{source}: rope scaling {rope!r} is not supported (only default RoPE)")
        theta = d.get("rope_theta", rope.get("rope_theta", 10000.0))  # transformers 5 moved it to rope_parameters
        heads = d["num_attention_heads"]
        return cls(
            model_type=mt, vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"], num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=heads, num_key_value_heads=d.get("num_key_value_heads") or heads,
            head_dim=d.get("head_dim") or d["hidden_size"] // heads, rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta), tie_word_embeddings=d.get("tie_word_embeddings", False),
            attention_bias=True if mt == "qwen2" else d.get("attention_bias", False), qk_norm=(mt == "qwen3"),
            max_position_embeddings=d.get("max_position_embeddings", 32768), raw=dict(d))

    def to_dict(self) -> dict:
        """config.json for save_pretrained: the original keys kept, the architecture ones made consistent."""
        d = dict(self.raw)
        d.update({k: v for k, v in asdict(self).items() if k not in ("raw", "qk_norm", "attention_bias")})
        d.setdefault("architectures", ["Qwen2ForCausalLM" if self.model_type == "qwen2" else "Qwen3ForCausalLM"])
        d.setdefault("hidden_act", "silu")
        if self.model_type == "qwen3":
            d["attention_bias"] = self.attention_bias
        if "rope_parameters" in d:  # keep transformers 5's layout consistent with rope_theta
            d["rope_parameters"] = {**d["rope_parameters"], "rope_theta": self.rope_theta}
        return d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # As HF: normalise in fp32, cast back to the input dtype, then scale (the order matters in bf16).
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(position_ids, head_dim: int, theta: float, dtype):
    """Non-interleaved (rotate-half) RoPE tables in fp32, cast to dtype. position_ids (B, T) -> (B, 1, T, D)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float) / head_dim)
    freqs = position_ids.float()[..., None] * inv_freq  # (B, T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def allow_recompiles(n: int):
    """Raise torch.compile's per-function recompile limit to at least n (past it a function silently runs eagerly).
    The compiled decode step and training blocks see a handful of legitimate variants each (grad on/off, mask or
    not, a single row, sampling settings), which together can pass the default of 8."""
    import torch._dynamo
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.6
    setattr(cfg, name, max(getattr(cfg, name), n))


def no_duck_shapes():
    """A context in which torch.compile gives each dynamic dimension its own symbol. By default ("duck shaping")
    dimensions of equal size at the first call share one: a decode batch of 64 rows at head_dim 64 compiled a graph
    for batch == head_dim, and the next batch size compiled again (one wasted compile per process; batches of 64
    or 128 rows are common). The switch is private; where a torch version lacks it this is a no-op."""
    try:
        from torch.fx.experimental import _config
    except ImportError:
        return contextlib.nullcontext()
    return _config.patch(use_duck_shape=False) if hasattr(_config, "use_duck_shape") else contextlib.nullcontext()


class KVCache:
    """Preallocated static K/V buffers, written by position: k[layer] is (B, kv_heads, max_len, head_dim).

    Static shapes let the sampler capture decode steps in a CUDA graph; each row keeps its own position.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, dtype=torch.float32, device="cpu"):
        shape = (batch_size, config.num_key_value_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.batch_size, self.max_len = batch_size, max_len

    def copy_rows(self, src, dst):
        """Copy whole cache rows src[i] -> dst[i] (the n samples of a prompt share its prefilled prefix)."""
        for buf in self.k + self.v:
            buf[dst] = buf[src]

    def keep_rows(self, keep):
        """Compact in place: rows `keep` (ascending) move to the front and the cache shrinks to len(keep) rows.
        The buffers keep their storage and start address, so a captured decode step can reuse them."""
        m = len(keep)
        for bufs in (self.k, self.v):
            for i, buf in enumerate(bufs):
                buf[:m] = buf[keep]
                bufs[i] = buf[:m]
        self.batch_size = m


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.gqa = self.n_kv != self.n_heads  # a plain bool: under torch.compile the head counts may be symbolic
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=False)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, kv=None, rows=None, index=None):
        B, T, _ = x.shape
        if hasattr(self, "qkv_proj"):  # fused for inference (Transformer.fuse_projections): one matmul, not three
            q, k, v = self.qkv_proj(x).split(self.qkv_proj.sizes, dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, self.n_heads, self.head_dim)
        k = k.view(B, T, self.n_kv, self.head_dim)
        v = v.view(B, T, self.n_kv, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            k_cache, v_cache = kv
            if rows is not None:  # prefill: store the fresh K/V in cache rows `rows`, attend over the fresh K/V
                k_cache[rows, :, :T] = k
                v_cache[rows, :, :T] = v
            else:  # decode: write each row's token at its own position, attend over the whole cache
                batch, pos = index  # (B,), (B,); an index_put, which torch.compile keeps in place (scatter_ it
                k_cache[batch, :, pos] = k[:, :, 0]  # would turn into a copy of the whole cache per layer)
                v_cache[batch, :, pos] = v[:, :, 0]
                # The query heads sharing a KV head become that head's query rows: plain attention over the
                # cache, read once, with no GQA flag (on CUDA, GQA with a mask falls back to the slow math kernel).
                g = self.n_heads // self.n_kv
                y = F.scaled_dot_product_attention(q.reshape(B, self.n_kv, g, self.head_dim), k_cache, v_cache,
                                                   attn_mask=mask)
                return self.o_proj(y.reshape(B, self.n_heads, self.head_dim).view(B, 1, -1))
        gqa = self.gqa
        if mask is not None and gqa:  # padded/packed rows: CUDA's mask-capable fused kernel has no GQA support
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            gqa = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        if hasattr(self, "gate_up_proj"):  # fused for inference (Transformer.fuse_projections)
            gate, up = self.gate_up_proj(x).split(self.gate_up_proj.sizes, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)  # SwiGLU


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, kv=None, rows=None, index=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv, rows, index)
        return x + self.mlp(self.post_attention_layernorm(x))


def head_logprobs(h, weight, targets, temperature=1.0, vocab_limit=None, entropy=False, chunk=2**27):
    """log softmax(h @ weight.T / temperature)[target] in fp32 (and the entropy), over ids < vocab_limit.

    The chunked form of grpo.token_logprobs / token_entropy (the reference definitions, tested equal): training
    scores every completion token through here. h (B, K, D) final hidden states, targets (B, K). Positions go
    through the vocabulary `chunk` logits at a time,
    each chunk recomputed in backward (activation checkpointing): at Qwen's 152k vocabulary, 16k positions would
    otherwise hold ~5 GB of bf16 logits, 10 GB of fp32 copies and as much again for their gradient.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to score tokens, got {temperature}")
    shape, D = targets.shape, h.shape[-1]
    h, targets = h.reshape(-1, D), targets.reshape(-1)
    weight = weight[:vocab_limit]  # once, not per chunk: each slice's backward would build a full-size gradient
    step = max(1, chunk // weight.shape[0])
    recompute = torch.is_grad_enabled() and len(targets) > step  # one chunk: nothing to save by recomputing
    lps, ents = [], []
    for s in range(0, len(targets), step):
        args = (h[s:s + step], weight, targets[s:s + step], temperature, entropy)
        lp, ent = checkpoint(_head_chunk, *args, use_reentrant=False) if recompute else _head_chunk(*args)
        lps.append(lp)
        ents.append(ent)
    # Fresh tensors, not views: FSDP2 warns that an in-place op on a view returned by forward would skip its hook.
    lp = torch.cat(lps).view(shape).clone()
    return (lp, torch.cat(ents).view(shape).clone()) if entropy else lp


def _head_chunk(h, weight, targets, temperature, entropy):
    z = F.linear(h, weight).float() / temperature                      # (N, V) fp32
    lse = torch.logsumexp(z, dim=-1)
    lp = z.gather(-1, targets[:, None])[:, 0] - lse
    ent = lse - (z.softmax(-1) * z).sum(-1) if entropy else lp.new_zeros(0)
    return lp, ent


class Transformer(nn.Module):
    """Qwen2/Qwen3 causal LM. `model(input_ids)` -> logits (B, T, vocab_size)."""

    head_chunk = 2**27  # logits per chunk when scoring targets (head_logprobs): 512 MB in fp32

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.hidden_size),
            layers=nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers)),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps)))
        # Tied checkpoints have one matrix for both ends: no lm_head parameter at all, so nothing can untie it
        # (meta-device loading, FSDP sharding) and the file layout (no lm_head.weight) is HF's.
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, input_ids, position_ids=None, attention_mask=None, cache: KVCache | None = None,
                cache_rows=None, logits_at=None, targets=None, temperature=1.0, vocab_limit=None, entropy=False,
                block_fn=None):
        """input_ids (B, T). attention_mask (B, T), 1 = real token, for padded batches (left or right); or a boolean
        (B, T, T), True where query i may attend key j (e.g. several completions sharing one prompt in a row).
        position_ids (B, T): default arange, or cumsum(attention_mask) - 1 when a 2-D mask is given. Packed rows
        (several sequences in one row, as the trainer packs a group's samples) pass both their positions and a
        (B, T, T) mask.
        cache + cache_rows (B,): prefill, store K/V of row b in cache row cache_rows[b] (right-padded prompts).
        cache alone: decode one token per row at position_ids (B, 1) over the whole cache.
        logits_at (B,) or (B, K): project only those positions of each row -> logits (B, 1, V) or (B, K, V)
        (the sampler's last prompt token; the trainer's completion window: no vocab projection of the prompt).
        targets (B, K) with logits_at: return instead the fp32 log-probabilities (B, K) of those next tokens under
        softmax(logits / temperature) over ids < vocab_limit, plus the entropy (B, K) when entropy=True: the trainer's
        view, computed by head_logprobs without ever holding all K positions' logits (see there).
        block_fn: call each block as block_fn(block, x, cos, sin, mask, kv, cache_rows, index) instead of block(...)
        (the sampler passes one torch.compile'd call: a single compiled graph then serves every layer).
        """
        B, T = input_ids.shape
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 3:
                raise ValueError("an explicit (B, T, T) attention_mask needs explicit position_ids")
            if attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            else:
                position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        x = self.model.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta, x.dtype)
        index = None
        if cache is not None and cache_rows is None:  # decode
            if T != 1:
                raise ValueError(f"decode takes one token per row, got input_ids of shape {tuple(input_ids.shape)}")
            pos = position_ids.view(B, 1, 1, 1)
            mask = torch.arange(cache.max_len, device=x.device).view(1, 1, 1, -1) <= pos  # (B, 1, 1, L)
            index = (torch.arange(B, device=x.device), position_ids[:, 0])
        else:
            mask = None if attention_mask is None else self._train_mask(attention_mask)
            if mask is not None:  # additive, in the compute dtype, made once: every layer's SDPA shares this tensor
                mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        for i, layer in enumerate(self.model.layers):
            kv = (cache.k[i], cache.v[i]) if cache is not None else None
            x = block_fn(layer, x, cos, sin, mask, kv, cache_rows, index) if block_fn else \
                layer(x, cos, sin, mask, kv, cache_rows, index)
        if logits_at is not None:
            at = logits_at if logits_at.dim() == 2 else logits_at[:, None]
            x = x.gather(1, at[..., None].expand(-1, -1, x.shape[-1]))
        x = self.model.norm(x)
        weight = self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight
        if targets is not None:
            return head_logprobs(x, weight, targets, temperature, vocab_limit, entropy, self.head_chunk)
        return F.linear(x, weight)

    @staticmethod
    def _train_mask(attention_mask):
        """(B, 1, T, T) bool, or None (plain causal, lets SDPA pick flash attention) for an unpadded batch."""
        if attention_mask.dim() == 3:  # explicit (B, T, T), e.g. packed rows; a query always sees itself
            eye = torch.eye(attention_mask.shape[-1], dtype=torch.bool, device=attention_mask.device)
            return (attention_mask.bool() | eye)[:, None]
        if bool(attention_mask.all()):
            return None
        T = attention_mask.shape[1]
        idx = torch.arange(T, device=attention_mask.device)
        allowed = (idx[None, :] <= idx[:, None])[None] & attention_mask.bool()[:, None, :]  # causal, not padding
        # Every query may see itself: a fully masked row (a left-pad query) would give NaN, and NaN in a pad
        # position's values leaks into real rows through 0 * NaN in the next layer.
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=allowed.device)
        return allowed[:, None]  # (B, 1, T, T)

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, seed: int | None = None):
        """Random init for models built from a config (tests, the CPU demo): normal weights, zero biases."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        return self

    # ---- fused projections, for inference ----

    @torch.no_grad()
    def fuse_projections(self) -> "Transformer":
        """In place, for a model that only generates (the sampler's copy, eval.py): each block's q/k/v projections
        become one matrix multiplication (qkv_proj) and gate/up another (gate_up_proj), as serving engines do. A
        decode step's matmuls are tiny, so each costs about a kernel launch: three fewer per block (72 a step at
        0.5B's 24 layers). The same weights and arithmetic (a different matmul blocking may change the last bits).
        `hf_state_dict()` still names the parameters as the checkpoint does (views into the fused ones), which is
        how dist.sync_sampler writes into them."""
        for block in self.model.layers:
            attn, mlp = block.self_attn, block.mlp
            if not hasattr(attn, "qkv_proj"):
                attn.qkv_proj = _fuse(attn, ("q_proj", "k_proj", "v_proj"))
                mlp.gate_up_proj = _fuse(mlp, ("gate_proj", "up_proj"))
        return self

    def hf_state_dict(self) -> dict:
        """The state dict under the checkpoint's names: a fused model's q/k/v and gate/up weights come out as views
        into its fused ones (writing them writes the model)."""
        out = {}
        for name, t in self.state_dict(keep_vars=True).items():
            owner, _, leaf = name.rpartition(".")
            module = self.get_submodule(owner)
            if not hasattr(module, "parts"):
                out[name] = t
                continue
            for part, view in zip(module.parts, t.split(module.sizes)):
                out[f"{owner.rpartition('.')[0]}.{part}.{leaf}"] = view
        return out

    # ---- Hugging Face safetensors in and out ----

    @classmethod
    def from_pretrained(cls, path: str, dtype=torch.float32, device="cpu") -> "Transformer":
        """Load an HF checkpoint folder (config.json + model.safetensors or sharded + index) into parameters."""
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{cfg_path} not found: {path!r} is not a Hugging Face checkpoint folder")
        config = ModelConfig.from_dict(read_json(cfg_path), source=cfg_path)
        with torch.device("meta"):  # no memory until the real tensors are assigned
            model = cls(config)
        expected = {k: v for k, v in model.state_dict().items()}
        state = {}
        for name, tensor in _read_safetensors(path, device):
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue  # some exporters keep the tied copy; the embedding is the one matrix we use
            if name not in expected:
                raise ValueError(f"{path}: unexpected tensor {name!r} (not part of a {config.model_type} model "
                                 f"with {config.num_hidden_layers} layers)")
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                 f"expected {tuple(expected[name].shape)} from config.json")
            state[name] = tensor.to(dtype=dtype, device=device)
        missing = sorted(set(expected) - set(state))
        if missing:
            hint = " (config says tie_word_embeddings=false, so lm_head.weight is required)" \
                if missing == ["lm_head.weight"] else ""
            raise ValueError(f"{path}: missing tensors {missing[:5]}{'...' if len(missing) > 5 else ''}{hint}")
        model.load_state_dict(state, assign=True, strict=True)
        return model

    def save_pretrained(self, path: str, max_shard_bytes: int = 5 * 2**30, state_dict: dict | None = None):
        """Write config.json + safetensors in HF's layout (sharded with an index above max_shard_bytes)."""
        if state_dict is None:  # views into fused weights share storage, which safetensors refuses: copies
            state_dict = {k: v.detach() if v._base is None else v.detach().clone()
                          for k, v in self.hf_state_dict().items()}
        save_pretrained(self.config, state_dict, path, max_shard_bytes)

    def num_params(self, exclude_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.model.embed_tokens.weight.numel() if exclude_embedding else n


def _fuse(module: nn.Module, names: tuple) -> nn.Linear:
    """One nn.Linear whose output is those of module's Linears `names`, concatenated; they are removed."""
    parts = [getattr(module, n) for n in names]
    with torch.device("meta"):
        fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), bias=parts[0].bias is not None)
    for leaf in ("weight", "bias") if parts[0].bias is not None else ("weight",):
        tensors = [getattr(p, leaf) for p in parts]
        setattr(fused, leaf, nn.Parameter(torch.cat(tensors), requires_grad=tensors[0].requires_grad))
    fused.parts, fused.sizes = names, [p.out_features for p in parts]
    for n in names:
        delattr(module, n)
    return fused


def save_pretrained(config: ModelConfig, state: dict, path: str, max_shard_bytes: int = 5 * 2**30):
    """Write a state dict as an HF checkpoint folder: config.json + safetensors (sharded with an index above
    max_shard_bytes). Also used for FSDP-gathered weights, which have no Transformer to call it on."""
    os.makedirs(path, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    config_dict = config.to_dict()
    dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    config_dict["torch_dtype"] = config_dict["dtype"] = dtype
    shards, cur, cur_bytes = [], {}, 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if cur and cur_bytes + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, cur_bytes = {}, 0
        cur[name], cur_bytes = t, cur_bytes + nbytes
    shards.append(cur)
    for old in os.listdir(path):  # stale shards of an earlier save would confuse loaders
        if old.startswith("model") and (old.endswith(".safetensors") or old.endswith(".index.json")):
            os.remove(os.path.join(path, old))
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(path, fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2)


def read_json(path: str):
    """A JSON file's content; a file that does not parse is an error naming it."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None


def _read_safetensors(path: str, device="cpu"):
    """Yield (name, tensor) from model.safetensors or from the shards listed in model.safetensors.index.json."""
    single, index = os.path.join(path, "model.safetensors"), os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: no \"weight_map\" object (tensor name -> shard file)")
        files = sorted(set(weight_map.values()))
        for fname in files:
            if not os.path.isfile(os.path.join(path, fname)):
                raise FileNotFoundError(f"{index} names shard {fname!r}, which is not in {path}")
    elif os.path.isfile(single):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors and no model.safetensors.index.json")
    for fname in files:
        try:
            f = safe_open(os.path.join(path, fname), framework="pt", device="cpu")
        except Exception as e:  # noqa: BLE001 - safetensors' own error type: a cut-short or foreign file
            raise ValueError(f"{os.path.join(path, fname)}: not a readable safetensors file ({e})") from None
        with f:
            for name in f.keys():
                yield name, f.get_tensor(name)
