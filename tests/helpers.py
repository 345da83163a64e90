"""Tiny random checkpoints for tests (no downloads): HF-layout folders written by this project's own code."""
import shutil

import pytest
import torch

from tooln1_min.model import ModelConfig, Transformer

# Small configs that still exercise every branch: GQA, MHA, tied/untied, Qwen3 with head_dim != hidden/heads.
CONFIGS = {
    "qwen2_gqa_tied": dict(model_type="qwen2", vocab_size=160, hidden_size=48, intermediate_size=80,
                           num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                           tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6),
    "qwen2_mha_untied": dict(model_type="qwen2", vocab_size=131, hidden_size=40, intermediate_size=72,
                             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                             tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5),
    "qwen3_odd": dict(model_type="qwen3", vocab_size=150, hidden_size=36, intermediate_size=52,
                      num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1, head_dim=16,
                      tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6, attention_bias=False),
}


def make_model(name_or_dict, seed=0, std=0.2) -> Transformer:
    d = CONFIGS[name_or_dict] if isinstance(name_or_dict, str) else name_or_dict
    model = Transformer(ModelConfig.from_dict(dict(d))).init_weights(std=std, seed=seed)
    with torch.no_grad():  # non-trivial norms and biases so their handling is actually tested
        g = torch.Generator().manual_seed(seed + 1)
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith(".bias"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


# torch.compile on CPU generates C++: tests of the compiled paths skip where there is no compiler.
needs_cxx = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                               reason="torch.compile on CPU needs a C++ compiler")
