#!/usr/bin/env bash
# Prepares this machine for `ray up cluster/<config>.yaml`; `make cluster-up` runs it from the repository
# root before `ray up`. Both directories live outside the repository and are copied to every node by the
# launcher configs' file_mounts:
#   ~/.adgan/cluster-secrets/  (mode 700) ray_auth_token: the cluster's Ray token, generated once (mode 600);
#                              wandb_api_key: optional, written by you (see docs/cluster.md)
#   ~/.adgan/cluster-wheel/    a wheel of the working tree, installed on every node by setup_commands
# PYTHON names the interpreter that builds the wheel (default .venv/bin/python).
set -euo pipefail

PYTHON="${PYTHON:-.venv/bin/python}"
secrets_dir="$HOME/.adgan/cluster-secrets"
wheel_dir="$HOME/.adgan/cluster-wheel"

if [ ! -f pyproject.toml ] || [ ! -d adgan ]; then
    echo "cluster/prepare.sh: run it from the repository root (no pyproject.toml / adgan/ in $PWD)" >&2
    exit 2
fi

(
    umask 077
    mkdir -p "$secrets_dir"
    chmod 700 "$secrets_dir"
    if [ ! -s "$secrets_dir/ray_auth_token" ]; then
        # 256 random bits, like `ray get-auth-token --generate`, written atomically.
        "$PYTHON" -c 'import secrets; print(secrets.token_hex(32), end="")' > "$secrets_dir/ray_auth_token.new"
        mv "$secrets_dir/ray_auth_token.new" "$secrets_dir/ray_auth_token"
        echo "cluster/prepare.sh: new Ray auth token in $secrets_dir/ray_auth_token"
    fi
    chmod 600 "$secrets_dir"/*
)

# Build from a copy so that the build leaves nothing (build/, *.egg-info) in the working tree.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
# (setup.py ships sweeps/ in the wheel as adgan.specs: `adgan sweep mnist` and `adgan specs` on the nodes)
tar --exclude='__pycache__' -cf - pyproject.toml setup.py README.md adgan sweeps | tar -xf - -C "$src"
rm -rf "$wheel_dir"
mkdir -p "$wheel_dir"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$wheel_dir" "$src"
echo "cluster/prepare.sh: $(ls "$wheel_dir") in $wheel_dir"
