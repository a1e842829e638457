#!/usr/bin/env bash
# The benchmark set for a CUDA machine, every table and log in one folder.
#
#   bash benchmarks/gpu.sh [--dry-run] [--task DIR] [--peak-tflops X] LOGDIR
#
# Sections, each run whatever the previous one's outcome:
#   step_cost           benchmarks/step_cost.py --suite all at the SmolLM2-135M and Qwen2.5-0.5B
#                       shapes, seq 512 and 1024, batch 8, bf16 autocast, with MFU
#   rloo_vs_trl         benchmarks/rloo_vs_trl.py (our RLOO step vs TRL's RLOOTrainer) on the
#                       GPU: the task's π_init in fp32, then the SmolLM2-135M backbone in bf16
#                       (section rloo_vs_trl_smollm2; random weights, the task's vocabulary)
#   sampler_throughput  benchmarks/sampler_throughput.py (HFSampler vs model.generate), same two
# LOGDIR gets machine.txt (GPU, CPU, versions), <section>.md (the script's stdout: its tables),
# <section>.log (its stderr) and summary.txt (one "section: exit N, S s" line each). The exit
# status is 0 only if every section exited 0.
#
# --dry-run runs the same commands end to end on CPU at toy sizes (tiny model, 1 timed step,
# 2 prompts x 2 samples, 4 new tokens) to check the script itself; its numbers mean nothing.
# --task: the synthetic task of the RLOO and sampler sections (default runs/quickstart/task when
# it exists, else LOGDIR/task, built by the first section that needs it).
# --peak-tflops: the GPU's peak for MFU when step_cost.py does not know it (H100/H200, A100).
# PYTHON picks the interpreter (default: python).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
DRY=0
TASK=""
LOG=""
PEAK=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --task) TASK="${2:?--task needs a folder}"; shift 2 ;;
    --peak-tflops) PEAK=(--peak-tflops "${2:?--peak-tflops needs a number}"); shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "gpu.sh: unknown option $1" >&2; exit 2 ;;
    *)
      if [ -n "$LOG" ]; then echo "gpu.sh: one LOGDIR only (got $LOG and $1)" >&2; exit 2; fi
      LOG="$1"; shift ;;
  esac
done
if [ -z "$LOG" ]; then
  echo "usage: bash benchmarks/gpu.sh [--dry-run] [--task DIR] [--peak-tflops X] LOGDIR" >&2
  exit 2
fi
mkdir -p "$LOG" && LOG="$(cd "$LOG" && pwd)"
if [ -z "$TASK" ]; then
  if [ -f "$ROOT/runs/quickstart/task/task.json" ]; then TASK="$ROOT/runs/quickstart/task"
  else TASK="$LOG/task"; fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
cd "$ROOT" || exit 1

if [ "$DRY" = 1 ]; then
  STEP_COST=(--suite all --models tiny --seq 32 --batch 2 --steps 1 --warmup 1 --dtype fp32
             --isolation none)
  RLOO=(--steps 1 --warmup 0 --rounds 1 --prompts-per-step 2 --k 2 --max-new-tokens 4
        --sample-prompts 2 --sample-reps 1 --sample-warmup 0)
  SAMPLER=(--prompts 2 --k 2 --max-new-tokens 4 --reps 1)
  BIG=(--shape tiny)  # the shape path at toy size; CPU, fp32
else
  STEP_COST=(--suite all --models smollm2-135m qwen2.5-0.5b --seq 512 1024 --batch 8
             --steps 10 --warmup 3 --dtype bf16)
  RLOO=(--device cuda)
  SAMPLER=(--device cuda)
  BIG=(--shape smollm2-135m --bf16)
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host $(hostname); dry run: $DRY"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //'), $(nproc --all) cores"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    echo "gpu: none (nvidia-smi not found)"
  fi
  "$PY" -c 'import torch, transformers, trl; print(f"torch {torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()}), transformers {transformers.__version__}, trl {trl.__version__}")'
} >"$LOG/machine.txt" 2>&1
: >"$LOG/summary.txt"

FAILED=0
section() {
  local name="$1"
  shift
  local start=$SECONDS rc
  echo "== $name: $*" >&2
  "$PY" "$@" >"$LOG/$name.md" 2>"$LOG/$name.log"
  rc=$?
  echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$LOG/summary.txt" >&2
  [ "$rc" = 0 ] || FAILED=1
}

section step_cost benchmarks/step_cost.py "${STEP_COST[@]}" ${PEAK[@]+"${PEAK[@]}"}
section rloo_vs_trl benchmarks/rloo_vs_trl.py --task "$TASK" "${RLOO[@]}"
section rloo_vs_trl_smollm2 benchmarks/rloo_vs_trl.py --task "$TASK" "${RLOO[@]}" "${BIG[@]}"
section sampler_throughput benchmarks/sampler_throughput.py --task "$TASK" "${SAMPLER[@]}"
section sampler_throughput_smollm2 benchmarks/sampler_throughput.py --task "$TASK" \
  "${SAMPLER[@]}" "${BIG[@]}"
exit "$FAILED"
