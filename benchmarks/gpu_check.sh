#!/usr/bin/env bash
# The project's GPU check: run on a CUDA machine where python3 already has PyTorch and torchvision,
# with no internet. Installs ncviz without dependencies (pip install --no-deps -e .) and, from
# WHEEL_DIR when given, the wheels of what that machine lacks (isal, grad-cam, ttach, ...), then:
#   1. pytest -m cuda (CUDA equals CPU, autocast, pinned memory, folder runs on CUDA);
#   2. the forward passes alone at several batch sizes (bf16), to choose the CUDA default;
#   3. `evaluate` with box metrics on CUDA, bf16 (bench_evaluate.py), against the forward passes;
#   4. the batch benchmark on CUDA, bf16, batch 128, both render pools, workers and
#      render threads sized to the cores;
#   5. training: TRAIN_EPOCHS epochs (the first a warm-up) of ResNet-20 and ResNet-20-NC with the
#      sweep's loop on TRAIN_IMAGES generated 32-px images of 100 classes (CIFAR-100's size; nothing
#      is downloaded), data on the device, bf16, channels-last (train_speed.py), and the projected
#      minutes of one 160-epoch CIFAR-100 run;
# and prints one Markdown table. Each step has a time limit, and a step that would end past
# BUDGET seconds (default 480) is skipped, so the table always comes out.
#
#   benchmarks/gpu_check.sh [WHEEL_DIR]        # e.g. benchmarks/gpu_check.sh .whl
# Environment: PYTHON (default python3), IMAGES (default 384), EVAL_IMAGES (512), BUDGET (480 s),
# BATCHES ("128"), BENCH_LIMIT (150 s per bench_batch run), TRAIN_IMAGES (50000), TRAIN_EPOCHS (3),
# OUT (a folder for the logs; default
# a temporary one). To try the script's plumbing on a machine without a GPU:
#   DEVICE=cpu PRECISION=fp32 BATCHES="4 8" SIZES=4,8 IMAGES=24 SIZE_IMAGES=24 ARCH=resnet18 \
#       TRAIN_IMAGES=256 TRAIN_EPOCHS=2 benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
IMAGES=${IMAGES:-384}
EVAL_IMAGES=${EVAL_IMAGES:-512}
BUDGET=${BUDGET:-480}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
BATCHES=${BATCHES:-128}
BENCH_LIMIT=${BENCH_LIMIT:-150}   # seconds for one bench_batch.py run (on one H200: 67 s at 384 images)
SIZES=${SIZES:-16,32,64,128,256}
ARCH=${ARCH:-resnet101}
TRAIN_IMAGES=${TRAIN_IMAGES:-50000}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-3}
LOGS=${OUT:-$(mktemp -d)}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1

if [ $# -ge 1 ] && [ -n "$1" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/ncviz-site "$1"/*.whl \
        || { echo "gpu_check: installing the wheels of $1 failed"; exit 1; }
    export PYTHONPATH=/tmp/ncviz-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$LOGS/install.log" 2>&1 \
    || { echo "gpu_check: pip install -e . failed, using the source tree on PYTHONPATH"; export PYTHONPATH=$PWD:${PYTHONPATH:-}; }
"$PY" -c "import torch, nc_viz; assert '$DEVICE' == 'cpu' or torch.cuda.is_available(), 'no CUDA device'" \
    || { echo "gpu_check: no CUDA device or ncviz does not import"; exit 1; }

cores=$(nproc)
workers=$(( cores / 2 < 8 ? cores / 2 : 8 ))
threads=$(( cores / 2 < 8 ? cores / 2 : 8 ))
start=$SECONDS

# fits STEP_SECONDS: true when a step of that many seconds still ends within BUDGET.
fits() { [ $(( SECONDS - start + $1 )) -le "$BUDGET" ]; }

timeout 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests >"$LOGS/pytest_cuda.log" 2>&1
pytest_rc=$?
fits 60 && timeout 60 "$PY" benchmarks/batch_size.py --device "$DEVICE" --precision "$PRECISION" --sizes "$SIZES" \
    --images "${SIZE_IMAGES:-1024}" --rounds 2 --arch "$ARCH" >"$LOGS/batch_size.md" 2>"$LOGS/batch_size.err"
rm -f "$LOGS"/evaluate.* "$LOGS"/bench_* "$LOGS"/train.*   # no result of an earlier check in the same OUT
eval_bs=${BATCHES##* }
if fits 90; then
    timeout 90 "$PY" benchmarks/bench_evaluate.py --device "$DEVICE" --precision "$PRECISION" --batch-size "$eval_bs" \
        --images "$EVAL_IMAGES" --workers "$workers" --arch "$ARCH" --bootstrap 100 --json "$LOGS/evaluate.json" \
        >"$LOGS/evaluate.md" 2>"$LOGS/evaluate.err"
    echo $? >"$LOGS/evaluate.rc"
else
    echo skipped >"$LOGS/evaluate.rc"
fi
if fits 90; then   # about 15 s on one H200 at 50,000 images and 3 epochs (an estimate, not measured yet)
    PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout 90 "$PY" benchmarks/train_speed.py --device "$DEVICE" \
        --images "$TRAIN_IMAGES" --epochs "$TRAIN_EPOCHS" --json "$LOGS/train.json" >"$LOGS/train.md" 2>"$LOGS/train.err"
    echo $? >"$LOGS/train.rc"
else
    echo skipped >"$LOGS/train.rc"
fi
for bs in $BATCHES; do
    for pool in thread process; do
        fits "$BENCH_LIMIT" || { echo skipped >"$LOGS/bench_${bs}_${pool}.rc"; continue; }
        timeout "$BENCH_LIMIT" "$PY" benchmarks/bench_batch.py --device "$DEVICE" --precision "$PRECISION" --batch-size "$bs" \
            --images "$IMAGES" --workers "$workers" --render-threads "$threads" --render-pool "$pool" --arch "$ARCH" \
            --json "$LOGS/bench_${bs}_${pool}.json" >"$LOGS/bench_${bs}_${pool}.md" 2>"$LOGS/bench_${bs}_${pool}.err"
        echo $? >"$LOGS/bench_${bs}_${pool}.rc"
    done
done

"$PY" - "$LOGS" "$pytest_rc" "$cores" "$workers" "$threads" $(( SECONDS - start )) "$BATCHES" "$BENCH_LIMIT" <<'PYEOF'
import json, sys
from pathlib import Path

logs, rc, cores, workers, threads, seconds, batches, limit = Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
import torch
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (plumbing trial)"
print(f"## ncviz GPU check: {device}, torch {torch.__version__}, {cores} cores, "
      f"decode workers {workers}, render threads/processes {threads}, {seconds} s")
print()
tail = (logs / "pytest_cuda.log").read_text().strip().splitlines()
print(f"`pytest -m cuda`: exit {rc}: {tail[-1] if tail else 'no output'}")
if rc:
    print("```"); print("\n".join(tail[-25:])); print("```")
print()
sizes = logs / "batch_size.md"
print(sizes.read_text() if sizes.exists() and sizes.stat().st_size else
      f"batch sizes: no result ({(logs / 'batch_size.err').read_text()[-400:]})")
print()
print("| batch | render pool | layout | forward alone img/s | `ncviz batch` img/s | ratio | render+encode ms/figure | CPU-side ceiling img/s |")
print("|---|---|---|---|---|---|---|---|")
for bs in batches.split():
    for pool in ("thread", "process"):
        path = logs / f"bench_{bs}_{pool}.json"
        if not path.exists():
            code = (logs / f"bench_{bs}_{pool}.rc").read_text().strip()
            log = logs / f"bench_{bs}_{pool}.err"   # none when the step was skipped
            lines = log.read_text().splitlines() if log.exists() else []
            err = [l for l in lines if "Error" in l]
            done = [l for l in lines if l.startswith("bench_batch:")]
            why = ({"124": f"timed out ({limit} s{'; last step: ' + done[-1].split(None, 3)[-1] if done else ''})",
                    "skipped": "skipped (BUDGET)"}.get(code) or (err[-1] if err else f"exit {code}"))
            print(f"| {bs} | {pool} | failed | {why} | | | | |")
            continue
        for layout, n in json.loads(path.read_text())["layouts"].items():
            print(f"| {bs} | {pool} | {layout} | {n['forward_alone']:.0f} | {n['batch']:.0f} | {n['ratio']:.2f} | "
                  f"{n['render_ms']:.1f} | {n['cpu_side_ceiling']:.0f} |")
print()
result = logs / "evaluate.json"
if result.exists():
    e = json.loads(result.read_text())
    print(f"`evaluate` with box metrics (batch {batches.split()[-1]}): forward alone {e['forward_alone']:.0f} img/s, "
          f"evaluate {e['evaluate']:.0f} img/s, ratio {e['ratio']:.2f}, wall {e['wall_s']:.1f} s; ms per image: "
          + ", ".join(f"{k} {v:.1f}" for k, v in e["per_image_ms"].items()))
    print("CPU ms per image by thread: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(
        e["cpu_ms_per_image_by_thread"].items(), key=lambda kv: -kv[1])))
else:
    code = (logs / "evaluate.rc").read_text().strip()
    err = [l for l in (logs / "evaluate.err").read_text().splitlines() if l.strip()] if code != "skipped" else []
    print(f"`evaluate`: no result ({'skipped (BUDGET)' if code == 'skipped' else f'exit {code}'}"
          f"{': ' + err[-1] if err else ''})")
print()
print("| training (the sweep's loop; on CUDA: data on the device, bf16, channels-last) | images x epochs | train img/s "
      "| one 160-epoch CIFAR-100 run, projected |")
print("|---|---|---|---|")
result = logs / "train.json"
if result.exists():
    t = json.loads(result.read_text())
    for model, n in t["models"].items():
        print(f"| {model} | {t['images']:,} x {t['epochs']} (first a warm-up) | {n['images_per_s']:,.0f} "
              f"| {n['minutes_160_epochs']:,.1f} min |")
else:
    code = (logs / "train.rc").read_text().strip()
    err = [l for l in (logs / "train.err").read_text().splitlines() if l.strip()] if code != "skipped" else []
    why = {"124": "timed out (90 s)", "skipped": "skipped (BUDGET)"}.get(code) or f"exit {code}"
    print(f"| resnet20, resnet20_nc | no result: {why}{': ' + err[-1] if err else ''} | | |")
PYEOF
