#!/usr/bin/env bash
# Every GPU figure the project reports, in one command with a wall-time budget (see bench/gpu_all.py):
#
#   bash bench/gpu_all.sh --out DIR            # CUDA machine: env, correctness, sampler, update MFU, GRPO step
#   bash bench/gpu_all.sh --smoke --out DIR    # CPU rehearsal of every code path at toy sizes (tests run it)
#
# Writes DIR/results.jsonl (one line per figure, as soon as it exists), DIR/gpu_all.log and DIR/summary.md.
# TOKENIZER=/path/to/a/Qwen2.5/tokenizer/folder gives the GRPO step the real tokenizer (else one is trained).
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/gpu_all.py "$@"
