#!/usr/bin/env bash
# Every GPU figure the project reports, on one CUDA machine (H100 assumed by the MFU peak), each section's output
# kept in $OUT_DIR/<section>.log. Sections can be run one at a time (each takes a few minutes):
#
#   bash bench/gpu_all.sh check      # tests/test_gpu.py + logit parity at Qwen2.5-0.5B (all layers) and 7B widths
#   bash bench/gpu_all.sh sampler    # sampler vs transformers' generate: 0.5B x 320, 0.5B x 64, 7B x 64
#   bash bench/gpu_all.sh train      # update MFU at 1.5B and 0.5B (eager, --compile), GRPO steps at TRL's settings
#   bash bench/gpu_all.sh all
#
# The GRPO bench needs a Qwen2.5 tokenizer folder: TOKENIZER=/path/to/Qwen2.5-0.5B-Instruct (tokenizer.json).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-runs/gpu_bench}
mkdir -p "$OUT_DIR"
what=${1:-all}
status=0

run() {  # run LOG CMD...: echo the command, tee its output, remember a failure but go on
    local log=$1; shift
    echo "+ $*" | tee -a "$OUT_DIR/$log.log"
    "$@" 2>&1 | tee -a "$OUT_DIR/$log.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

if [ "$what" = check ] || [ "$what" = all ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/check.log"
    run check python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    run check python -m pytest tests/test_gpu.py -v -rs
    run check python bench/parity.py --size 0.5b
    run check python bench/parity.py --size 7b --layers 4
fi
if [ "$what" = sampler ] || [ "$what" = all ]; then
    run sampler python bench/bench_sampler.py --size 0.5b --prompts 64 --n 5 --prompt-len 256 --new 256 --hf
    run sampler python bench/bench_sampler.py --size 0.5b --prompts 64 --n 1 --prompt-len 256 --new 256 --hf
    run sampler python bench/bench_sampler.py --size 7b --prompts 64 --n 1 --prompt-len 256 --new 128 --hf
fi
if [ "$what" = train ] || [ "$what" = all ]; then
    for size in 1.5b 0.5b; do
        run train python bench/bench_train.py update --size $size --batch 4 --seq 1024
        run train python bench/bench_train.py update --size $size --batch 4 --seq 1024 --compile
    done
    if [ -n "${TOKENIZER:-}" ]; then
        run train python bench/bench_train.py grpo --size 0.5b --tokenizer "$TOKENIZER" --prompts 8 --n 5 --new 256 \
            --steps 3
    else
        echo "skipped the GRPO step bench: set TOKENIZER to a Qwen2.5 tokenizer folder" | tee -a "$OUT_DIR/train.log"
    fi
fi
exit $status
