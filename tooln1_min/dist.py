"""Distribution, applied from the outside: process group, FSDP2 sharding, full-weight gathers, the sampler's weight
sync. (The run folder and its checkpoints: checkpoint.py.)

Everything here is PyTorch's own machinery (fully_shard, torch.distributed.checkpoint); the model file knows
nothing about it. One process without torchrun is a world of size 1 and runs the very same code.
"""
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import checkpoint

from .model import ModelConfig, Transformer, allow_recompiles, no_duck_shapes


def init_distributed(device: str | None = None):
    """Start the process group (NCCL on GPUs, gloo on CPU). Returns (rank, world_size, device)."""
    if "RANK" not in os.environ:  # plain `python train.py`: a world of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        # On GPUs, gloo too: with --cpu-offload the gradients (clip_grad_norm_) and shards live in host memory.
        # A rank that dies or hangs in a collective ends the others after `timeout` with an error (NCCL's own
        # default can wait far longer). Long phases between collectives (a rollout) must stay under it.
        timeout = timedelta(minutes=float(os.environ.get("TOOLN1_PG_TIMEOUT_MIN", 30)))
        dist.init_process_group("cuda:nccl,cpu:gloo" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None, timeout=timeout)
    return dist.get_rank(), dist.get_world_size(), dev


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def log(msg):
    """Print on the main rank only."""
    if is_main():
        print(msg, flush=True)


def all_reduce(values, op=dist.ReduceOp.SUM, device="cpu"):
    """All-reduce a list of floats (one collective) and return the reduced floats."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=op)
    return t.tolist()


def all_reduce_dict(values: dict, op=dist.ReduceOp.SUM, device="cpu") -> dict:
    """all_reduce on a dict of floats: one collective, the names kept (every rank must pass the same keys)."""
    return dict(zip(values, all_reduce(list(values.values()), op, device)))


@torch.no_grad()
def sync_sampler(policy, sampler_model):
    """Copy the policy's full weights into the sampler's model (every rank holds one), one FSDP unit at a time:
    unshard() gathers all of a unit's parameters in one collective, in the compute dtype (bf16 on GPUs: half the
    bytes, and never a full fp32 copy beside the sampler's), as its forward does; then reshard() frees them. One
    collective per unit, not per parameter (the CPU demo on 2 ranks: 64 -> 8 ms a step). Once per step."""
    reshard(policy)
    target = sampler_model.hf_state_dict()  # by the checkpoint's names: views into a fused sampler's weights
    units = [(name, m) for name, m in policy.named_modules() if hasattr(m, "unshard")] or [("", policy)]
    for prefix, unit in units:
        if hasattr(unit, "unshard"):
            unit.unshard()
        for name, p in unit.named_parameters(prefix=prefix):
            if name in target and not hasattr(p, "full_tensor"):  # this unit's, now whole (others stay sharded)
                target.pop(name).copy_(p)
        reshard(unit)
    if target:
        raise RuntimeError(f"sync_sampler: the policy has no {sorted(target)}")


def _compiled(forward):
    """forward under torch.compile with dynamic shapes and no duck shaping (model.no_duck_shapes: else a first
    micro-batch of head_dim tokens compiles a graph for T == head_dim only, and the next length compiles again)."""
    compiled = torch.compile(forward, dynamic=True)

    def run(*args, **kwargs):
        with no_duck_shapes():
            return compiled(*args, **kwargs)
    return run


def build_sharded(config: ModelConfig, device, param_dtype=None, checkpointing=False, cpu_offload=False,
                  compile=False, per_block: bool | None = None):
    """A Transformer with every block (see shard_per_block), then the root, fully_shard-ed (FSDP2). Weights are
    uninitialised:
    load them with load_full_state. Tied embedding/lm_head is one parameter, so it stays in the root unit.
    compile: torch.compile each block's forward (all blocks share its graphs; shapes are dynamic). Replacing the
    forward, not the module, keeps HF parameter names and leaves FSDP's hooks outside the compiled code.
    per_block: one FSDP unit per block (True) or one for the whole model (False); None, the default, lets
    shard_per_block decide (benchmarks force it to compare the two in one run).

    The order is compile, then checkpointing, then sharding, each wrapping the block's forward. torchtitan wraps
    modules instead (checkpoint wrapper, then torch.compile of the module, then fully_shard), which renames
    parameters (`_checkpoint_wrapped_module.`, `_orig_mod.`); wrapping the forward keeps HF names, so checkpoints
    load in transformers as they are, and puts the recomputation outside the compiled graph."""
    with torch.device("meta"):
        model = Transformer(config)
    if compile:  # variants: grad on/off x mask or not x one row or more (x policy and reference) fill the default 8
        allow_recompiles(64)
    for block in model.model.layers:
        if compile:
            block.forward = _compiled(block.forward)
        if checkpointing:  # recompute each block in backward
            block.forward = _checkpointed(block.forward)
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
    kw = dict(mp_policy=mp or MixedPrecisionPolicy())
    if cpu_offload:
        kw["offload_policy"] = CPUOffloadPolicy()
    if per_block is None:
        per_block = shard_per_block(model, dist.get_world_size() if dist.is_initialized() else 1, cpu_offload)
    if per_block:
        for block in model.model.layers:
            fully_shard(block, **kw)
    fully_shard(model, **kw)
    # to_empty, never leave meta parameters: loading into meta tensors would not allocate the shards.
    model.to_empty(device="cpu" if cpu_offload else device)
    return model


BLOCK_UNIT_MIN_PARAMS = int(os.environ.get("TOOLN1_BLOCK_UNIT_MIN_PARAMS", 2**20))  # the rule's threshold (tests: 0)


def shard_per_block(model, world_size: int, cpu_offload: bool = False) -> bool:
    """The shard granularity rule: one FSDP unit per transformer block (gathered just before its forward and
    backward, freed after) when the weights are sharded over ranks (or offloaded) and a block holds >= 1M
    parameters, as every Qwen2.5 size does (0.5B: 15M per block). Otherwise the whole model is one unit, gathered
    once per forward and reduced once per backward:
    - tiny blocks (the CPU demo's hold 0.1M): per-block collectives would cost more in latency than the little
      memory they save;
    - one rank, no offload: nothing is sharded, so per-block units only add two collectives and a round of hooks per
      block per micro-batch; one unit holds the compute-dtype copy of every weight from forward to backward instead
      of one block's (2 more bytes per parameter in bf16, beside the 16 that fp32 weights, gradients and AdamW
      hold anyway)."""
    if world_size == 1 and not cpu_offload:
        return False
    return sum(p.numel() for p in model.model.layers[0].parameters()) >= BLOCK_UNIT_MIN_PARAMS


def _checkpointed(fn):
    def wrapped(*args, **kwargs):
        return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return wrapped


def load_full_state(model, full_state: dict | None):
    """Rank 0 holds the full state dict (others pass None); it is broadcast into every rank's shards."""
    # A shallow copy: set_model_state_dict replaces the dict's values with DTensors in place.
    set_model_state_dict(model, dict(full_state or {}),
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def gather_full_state(model) -> dict:
    """Full (unsharded) weights on rank 0 only, in CPU memory (other ranks get {}); a collective."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def reshard(model):
    """FSDP2 leaves the root's parameters unsharded after a no-grad forward; free them explicitly."""
    if hasattr(model, "reshard"):
        model.reshard()


def weights_finite(model, device) -> bool:
    """Whether every parameter of every rank's shards is finite (one collective)."""
    bad = 0.0
    with torch.no_grad():
        for p in model.parameters():
            local = p.to_local() if hasattr(p, "to_local") else p
            if local.numel() and not bool(torch.isfinite(local).all()):
                bad = 1.0
                break
    return all_reduce([bad], device=device)[0] == 0
