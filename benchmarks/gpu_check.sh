#!/usr/bin/env bash
# The GPU check of issue 15, in one script: run it once on the device machine (see benchmarks/gpu_wheels.sh
# for the two `run` calls that carry Ray there), or here, where every GPU stage skips with its reason.
#
#     OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh     # OUT: where the logs and tables go
#
# Stages, each under its own `timeout`, the whole at most GPU_CHECK_SECONDS (default 480 s):
#   install  the carried wheels (.whl/, .whl2/; ray's wheel travels cut in two and is joined and checked
#            against .whl/SHA256SUMS) into /tmp/site with `pip install --no-index --no-deps --target`; the
#            project itself is used from the working tree through PYTHONPATH (nothing to install, nothing
#            written outside /tmp; `pip install --no-deps --no-build-isolation -e .` also works offline,
#            setuptools and wheel being in the image, but it writes into the image's environment and adds
#            nothing the check needs: the CLI runs as `python -m adgan.cli`). Skipped where ray and optuna
#            import already, or where no .whl/ is present;
#   env      GPU name, driver, torch and CUDA versions, CPU model and flags;
#   tests    `pytest -m gpu tests/test_gpu.py` (all skipped without CUDA);
#   bench    throughput of GANomaly, EGBAD and AnoGAN (fp32 / TF32 / bf16 autocast), AnoGAN's batched against
#            one-at-a-time latent search, 4 processes sharing the GPU, the full-budget sizes
#            (benchmarks/gpu_bench.py); without CUDA only the CPU reference of GANomaly;
#   sweep    a small real sweep with `--gpu 0.25` and with `--gpu 1` (needs CUDA and Ray);
#   report   summary.md and results.json.
# What comes back from the device (at most 8 files, flat): summary.md, results.json, check.log, install.log,
# pytest.log, sweep.log, smi_gpu.csv, smi_compute-apps.csv.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$OUT"
TOTAL=${GPU_CHECK_SECONDS:-480}
START=$SECONDS
WORK=$(mktemp -d /tmp/gpu-check-work.XXXXXX)
SITE="${TMPDIR:-/tmp}/site"  # = gpu_bench.py deps --site default (tempfile.gettempdir())
export PYTHONUNBUFFERED=1
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi

left() { echo $((TOTAL - (SECONDS - START))); }

# stage NAME CAP_SECONDS COMMAND...: run COMMAND under `timeout`, at most CAP seconds and what is left.
stage() {
    local name=$1 cap=$2 t rc
    shift 2
    t=$(left)
    t=$((t < cap ? t : cap))
    if [ "$t" -lt 15 ]; then
        echo "== $name: skipped: the check's $TOTAL s are spent"
        return 0
    fi
    echo "== $name (at most ${t}s; $(($SECONDS - START))s into the check)"
    timeout -k 10 "$t" "$@"
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "== $name: TIMED OUT after ${t}s"
    else
        echo "== $name: exit $rc"
    fi
    return 0
}

install() {
    if "$PY" -c "import ray, optuna" 2>/dev/null; then
        echo "skipped: ray and optuna import already ($("$PY" -c 'import ray; print(ray.__file__)'))"
        return 0
    fi
    if [ ! -d .whl ]; then
        echo "skipped: no .whl/ here (make it with benchmarks/gpu_wheels.sh and carry it): the Ray stages skip"
        return 0
    fi
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        echo "skipped: the carried wheels are for CPython 3.12, $PY is $("$PY" -V 2>&1)"
        return 0
    fi
    local joined=$WORK/wheels p1 base p2
    mkdir -p "$joined"
    for p1 in .whl/*.whl.part1; do
        [ -e "$p1" ] || continue
        base=$(basename "$p1" .part1)
        p2=.whl2/$base.part2
        if [ ! -f "$p2" ]; then
            echo "missing $p2 (parked by the first of the two run calls; the machine went back in between?):" \
                 "$base not installed, the Ray stages will skip"
            continue
        fi
        cat "$p1" "$p2" > "$joined/$base"
        if ! (cd "$joined" && grep " $base\$" "$ROOT/.whl/SHA256SUMS" | sha256sum --check --quiet); then
            echo "$base: the joined parts do not match .whl/SHA256SUMS: not installed"
            rm -f "$joined/$base"
        fi
    done
    local wheels=(.whl/*.whl)
    [ -d .whl2 ] && for f in .whl2/*.whl; do [ -e "$f" ] && wheels+=("$f"); done
    for f in "$joined"/*.whl; do [ -e "$f" ] && wheels+=("$f"); done
    echo "installing ${#wheels[@]} wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${wheels[@]}" 2>&1 | grep -v "^WARNING: Target directory" || true
    PYTHONPATH="$ROOT:$SITE" "$PY" benchmarks/gpu_bench.py deps --site "$SITE"
    PYTHONPATH="$ROOT:$SITE" "$PY" -c "import ray, optuna; print('ray', ray.__version__, 'optuna', optuna.__version__)"
}

tests() {
    local extra=()
    "$PY" -c "import pytest_timeout" 2>/dev/null && extra=(--timeout 240)
    "$PY" -m pytest -m gpu tests/test_gpu.py -q -rfEs -p no:cacheprovider "${extra[@]}" 2>&1 \
        | tee "$OUT/pytest.log"
}

main() {
    echo "# GPU check (issue 15): $(date -u +%FT%TZ), $(hostname), output in $OUT, at most $TOTAL s"
    stage install 150 bash -c install 2>&1 | tee "$OUT/install.log"
    if [ -d "$SITE" ]; then
        export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
    echo "PYTHONPATH=$PYTHONPATH; python: $PY ($("$PY" -V 2>&1))"
    stage env 60 "$PY" benchmarks/gpu_bench.py env --json "$WORK/env.json"
    if command -v nvidia-smi > /dev/null; then nvidia-smi; else echo "(no nvidia-smi)"; fi
    stage tests 200 bash -c tests
    # Without CUDA, bench measures a quick CPU figure only (the recorded reference is CPU_REFERENCE).
    stage bench 180 "$PY" benchmarks/gpu_bench.py bench --cpu-n 384 --cpu-repeats 2 --json "$WORK/bench.json"
    local t
    t=$(left)
    t=$(( (t < 200 ? t : 200) - 20 ))
    stage sweep 200 "$PY" benchmarks/gpu_bench.py sweep --json "$WORK/sweep.json" --log "$OUT/sweep.log" \
        --smi-dir "$OUT" --timeout $(( t / 2 > 30 ? t / 2 : 30 ))
    "$PY" benchmarks/gpu_bench.py report --json "$WORK/env.json" "$WORK/bench.json" "$WORK/sweep.json" \
        --pytest-log "$OUT/pytest.log" --md "$OUT/summary.md" --out-json "$OUT/results.json"
    echo "# done in $((SECONDS - START)) s; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
}

export PY ROOT OUT WORK SITE
export -f install tests
main 2>&1 | tee "$OUT/check.log"
rm -rf "$WORK"
