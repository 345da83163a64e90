"""The run folder: numbered checkpoints, a pointer to the latest switched in one rename, and the rules that keep a
run's work (a run folder is never overwritten by accident; non-finite weights are never saved).

    <out>/train_config.json       the settings the run started with; config_changes.jsonl: what a resume changed
    <out>/metrics.jsonl           one line per step, one trajectory (cut back to the checkpoint's step on resume)
    <out>/checkpoints/step-N/     hf/ (config, safetensors, tokenizer files: what transformers and vLLM load),
                                  resume/ (sharded model + optimizer), trainer_state.json (step, LR schedule, RNG)
    <out>/checkpoint              symlink to the latest complete checkpoints/step-N

A checkpoint is written to a hidden temporary folder, renamed to step-N once complete, and only then does the
pointer move (a new symlink renamed over the old one): at every moment `checkpoint` names a complete checkpoint,
and --resume takes the newest complete one (newer than the pointer's only after a kill between the two renames).
The last `keep` checkpoints (and every `keep_every`-th step, if asked) stay; older ones are deleted after the switch.

Trust: resume/ is written by torch.distributed.checkpoint, whose metadata file is a pickle. Resuming from a folder
runs code from it, as loading any pickle does: resume only run folders that your own runs wrote.
"""
import json
import os
import re
import shutil
import uuid

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from .dist import all_reduce, gather_full_state, is_main
from .model import ModelConfig, save_pretrained

STEPS, POINTER = "checkpoints", "checkpoint"
RUN_FILES = ("train_config.json", "metrics.jsonl", "config_changes.jsonl", "evals.json", "tensorboard", "wandb",
             POINTER, STEPS)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "vocab.json", "merges.txt",
                   "chat_template.jinja", "special_tokens_map.json")
_STEP_DIR = re.compile(r"step-(\d+)$")


def _complete(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "trainer_state.json"))


def step_dirs(out: str) -> list[tuple[int, str]]:
    """(step, path) of every complete numbered checkpoint, oldest first."""
    root = os.path.join(out, STEPS)
    found = []
    for name in os.listdir(root) if os.path.isdir(root) else []:
        m = _STEP_DIR.match(name)
        if m and _complete(os.path.join(root, name)):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found)


def latest_checkpoint(out: str) -> str | None:
    """The newest complete checkpoint: the one the pointer names, or a newer one when a run was killed between
    writing it (complete: trainer_state.json is written last, then the folder renamed) and moving the pointer;
    the pointer itself when it is an older layout's real folder."""
    steps = step_dirs(out)
    if steps:
        return steps[-1][1]
    pointer = os.path.join(out, POINTER)
    return os.path.realpath(pointer) if _complete(pointer) else None


def describe_run(out: str) -> str | None:
    """What a run left in `out`, or None when it holds no run."""
    if not os.path.isdir(out):
        return None
    latest = latest_checkpoint(out)
    metrics = os.path.join(out, "metrics.jsonl")
    lines = sum(1 for line in open(metrics) if line.strip()) if os.path.isfile(metrics) else 0
    if latest:
        return f"a checkpoint at step {read_state(latest)['step']} and {lines} metrics lines"
    if lines or os.path.exists(os.path.join(out, "train_config.json")):
        return f"a run without a complete checkpoint ({lines} metrics lines)"
    return None


def read_state(ckpt: str) -> dict:
    with open(os.path.join(ckpt, "trainer_state.json")) as f:
        return json.load(f)


def clear_run(out: str):
    """Delete what a run wrote in `out` (only the run's own files: anything else in the folder stays)."""
    for name in RUN_FILES:
        path = os.path.join(out, name)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
    _remove_links(out)


def _remove_links(out: str):
    """The temporary links of pointer switches (`.checkpoint.<pid>.link`)."""
    for name in os.listdir(out):
        if name.startswith(f".{POINTER}.") and name.endswith(".link"):
            os.remove(os.path.join(out, name))


def run_file_holding(out: str, path: str) -> str | None:
    """The run file or folder of `out` (what clear_run deletes) that holds `path`, links followed; else None."""
    target = os.path.realpath(path)
    for name in RUN_FILES:
        place = os.path.join(out, name)
        real = os.path.realpath(place)
        if os.path.lexists(place) and (target == real or target.startswith(real + os.sep)):
            return place
    return None


def check_shared_folder(out: str, device):
    """Every rank must see the same run folder (rank 0 switches the pointer; the others' shards go into the same
    temporary folder). Nodes with separate disks would strand their shards: refuse with a clear message."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    token = os.path.join(out, f".shared-check-{os.environ.get('MASTER_PORT', '0')}")
    if is_main():
        with open(token, "w") as f:
            f.write(uuid.uuid4().hex)
    dist.barrier()
    missing = all_reduce([0.0 if os.path.isfile(token) else 1.0], device=device)[0]
    dist.barrier()
    if is_main():
        os.remove(token)
    if missing:
        raise SystemExit(f"--out {out}: {int(missing)} rank(s) cannot see files rank 0 writes there. A multi-node "
                         "run needs --out on a filesystem every node shares (checkpoints are written by all ranks "
                         "and published by rank 0)")


def read_tokenizer_files(folder: str) -> dict[str, bytes]:
    """The tokenizer files of a model folder (TOKENIZER_FILES that exist), read once when a run starts: every
    checkpoint then holds the tokenizer the run trained with, even if the folder changes or goes away mid-run."""
    files = {}
    for name in TOKENIZER_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[name] = f.read()
    return files


def save_checkpoint(out: str, step: int, model, optimizer, trainer_state: dict, tokenizer_files: dict[str, bytes],
                    config: ModelConfig, keep: int = 2, keep_every: int = 0) -> str:
    """Write checkpoints/step-N (hf/, resume/, trainer_state.json last), then point `checkpoint` at it, then
    delete old checkpoints beyond `keep` (steps divisible by keep_every stay). Every rank calls this.
    tokenizer_files: {file name: bytes} (read_tokenizer_files), written into hf/ beside the weights."""
    root = os.path.join(out, STEPS)
    final, tmp = os.path.join(root, f"step-{step}"), os.path.join(root, f".step-{step}.tmp")
    if is_main():
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):  # this save's own temporary, and any a crashed save of another step left
            if name.startswith(".step-") and name.endswith(".tmp"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        os.makedirs(tmp)
    dist.barrier()
    full = gather_full_state(model)  # collective: every rank takes part
    if is_main():
        hf = os.path.join(tmp, "hf")
        save_pretrained(config, full, hf)
        for name, data in tokenizer_files.items():
            with open(os.path.join(hf, name), "wb") as f:
                f.write(data)
    del full
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=os.path.join(tmp, "resume"))
    if is_main():
        with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
            json.dump(dict(trainer_state, step=step, rng=_rng_state()), f, indent=1)
        _fsync_tree(tmp)  # on disk before it is published and older checkpoints are deleted (a power cut)
        if os.path.exists(final):  # the same step saved again (a resumed run): the pointer may name it
            _point(out, tmp)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync(root)
        _point(out, final)
        _fsync(out)
        _prune(out, keep, keep_every)
    dist.barrier()
    return final


def _fsync(path: str):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str):
    """fsync every file and folder below path (the other ranks' shards too), then path itself."""
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            _fsync(os.path.join(folder, name))
        _fsync(folder)


def _point(out: str, target: str):
    """Switch the `checkpoint` symlink to target in one rename (a real folder there, from an older layout, is
    moved into checkpoints/ first)."""
    pointer = os.path.join(out, POINTER)
    if os.path.isdir(pointer) and not os.path.islink(pointer):
        step = read_state(pointer)["step"] if _complete(pointer) else 0
        os.rename(pointer, os.path.join(out, STEPS, f"step-{step}" if step else ".legacy-incomplete"))
    _remove_links(out)  # this process's, and any a killed one left
    link = os.path.join(out, f".{POINTER}.{os.getpid()}.link")
    os.symlink(os.path.relpath(target, out), link)
    os.replace(link, pointer)


def _prune(out: str, keep: int, keep_every: int):
    current = latest_checkpoint(out)
    steps = step_dirs(out)
    recent = {path for _, path in steps[-keep:]} if keep > 0 else set()
    for step, path in steps:
        if path not in recent and path != current and not (keep_every and step % keep_every == 0):
            shutil.rmtree(path)


def load_resume(ckpt: str, model, optimizer) -> dict:
    """Restore sharded model + optimizer from ckpt/resume; returns trainer_state (the torch RNG restored).
    Reads a pickle (torch.distributed.checkpoint's metadata): see the trust note above."""
    if not _complete(ckpt):
        raise SystemExit(f"cannot resume: {ckpt} has no trainer_state.json (not a complete checkpoint)")
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=os.path.join(ckpt, "resume"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer_state = read_state(ckpt)
    _set_rng_state(trainer_state.pop("rng"))
    return trainer_state


def truncate_metrics(out: str, step: int):
    """Keep metrics.jsonl's lines up to `step`: a resumed run re-runs the later steps and writes them again."""
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        numbered = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    lines = []
    for i, (n, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except ValueError as e:
            if i + 1 < len(numbered):
                raise SystemExit(f"{path}:{n}: not a JSON line ({e}); fix or delete that line to resume") from None
            print(f"{path}:{n}: dropped a last line cut short (a crash while it was written)", flush=True)
            continue
        if record.get("step", 0) <= step:
            lines.append(line if line.endswith("\n") else line + "\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def _rng_state():
    # The loop itself is deterministic by construction (seeded shuffles, counter-based sampling noise); the
    # torch generator is saved anyway for user code (dropout, a custom loss) that draws from it.
    return {"torch": torch.get_rng_state().tolist()}


def _set_rng_state(state):
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
