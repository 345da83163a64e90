"""Regenerate tests/fixtures/golden_*: tiny random checkpoints + Hugging Face's logits on padded batches.

    python tests/make_golden.py      (needs transformers)

The golden parity test then runs even where transformers is absent. The logits come from transformers'
own Qwen2/Qwen3 implementation, never from this project's model.
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import CONFIGS, make_model  # noqa: E402

HERE = os.path.join(os.path.dirname(__file__), "fixtures")


def golden_inputs(vocab_size, seed=0):
    """Two rows: one right-padded, one left-padded, with HF-style position ids (cumsum of the mask - 1)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[0, 8:] = 0   # right padding
    mask[1, :4] = 0   # left padding
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def main():
    import transformers
    for name in CONFIGS:
        out = os.path.join(HERE, f"golden_{name}")
        make_model(name).save_pretrained(out)
        hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        ids, mask, pos = golden_inputs(CONFIGS[name]["vocab_size"])
        with torch.no_grad():
            logits = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        save_file({"input_ids": ids, "attention_mask": mask, "position_ids": pos, "logits": logits.contiguous()},
                  os.path.join(out, "golden.safetensors"))
        print(f"wrote {out} (transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
