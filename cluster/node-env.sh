# Environment of every Ray process and sweep driver on a node of a launcher cluster (cluster/aws-gpu.yaml,
# cluster/local.yaml). The head and worker start commands source it before `ray start`, and setup_commands
# make ~/.bashrc source it, so `ray exec` / `ray attach` shells (the sweep driver) get the same values.
# It holds no secret: secrets are read from ~/.adgan/cluster-secrets, the directory `ray up` copies from
# the same path on your machine, outside the repository (see docs/cluster.md).

# Ray token authentication: every process of the cluster must run with it on and find the same token.
# Ray reads the token from RAY_AUTH_TOKEN, else the file named by RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.
export RAY_AUTH_MODE=token
_adgan_secrets="$HOME/.adgan/cluster-secrets"
if [ -s "$_adgan_secrets/ray_auth_token" ]; then
    export RAY_AUTH_TOKEN_PATH="$_adgan_secrets/ray_auth_token"
fi
# W&B: the trials log from the worker nodes, so the key must be in every node's environment, and the
# raylet started after this passes it on to the trial processes.
if [ -s "$_adgan_secrets/wandb_api_key" ]; then
    WANDB_API_KEY="$(cat "$_adgan_secrets/wandb_api_key")"
    export WANDB_API_KEY
fi
# An S3-compatible store of your own for results (MinIO, Ceph; docs/cluster.md): its address, not a secret.
# Credentials never come from here: each machine's ~/.aws/credentials, or its instance profile on AWS.
if [ -z "${AWS_ENDPOINT_URL:-}" ] && [ -s "$_adgan_secrets/aws_endpoint_url" ]; then
    AWS_ENDPOINT_URL="$(cat "$_adgan_secrets/aws_endpoint_url")"
    export AWS_ENDPOINT_URL
fi
unset _adgan_secrets
export RAY_USAGE_STATS_ENABLED=0
# A node joins only a head of the same Ray and Python versions, by default to the patch level (3.11.4 and
# 3.11.9 are refused): machines you already have (cluster/local.yaml) seldom agree on that. The same minor
# version is what Ray's pickled tasks need; a patch difference is then a warning.
export RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor
# Datasets placed once on the shared filesystem, when there is one (see docs/cluster.md).
if [ -z "${ADGAN_DATA_DIR:-}" ] && [ -d /mnt/shared/data ]; then
    export ADGAN_DATA_DIR=/mnt/shared/data
fi
# Machines without Docker (cluster/local.yaml) run Ray and adgan from this virtual environment.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$HOME/adgan-venv/bin/activate" ]; then
    # shellcheck source=/dev/null
    . "$HOME/adgan-venv/bin/activate"
fi
