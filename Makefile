# adgan: every user-facing target depends on the virtual environment, created once (stamp file).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ADGAN  := $(VENV)/bin/adgan
# torch: the CPU build 2.13.0 where no torch is present (pip takes it from the local wheel cache where
# there is one); a CUDA machine installs its own torch first (see cluster/Dockerfile).
TORCH_SPEC ?= torch==2.13.0
SWEEP_ARGS ?=
CLUSTER ?= cluster/aws-gpu.yaml
SPEC ?= sweeps/mnist.yaml

.PHONY: venv test test-fast lint user-data sweep-smoke sweep-mnist sweep-fashion-mnist sweep-kdd99 sweep-cifar10 \
        cluster-tools cluster-up cluster-sweep cluster-down clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The suite runs on TEST_WORKERS pytest-xdist workers, a test file to a worker (its module-scoped fixtures,
# real sweeps and clusters, run once). More workers than cores: a real sweep's test spends much of its time
# waiting on processes starting and stopping. TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 4

# Byte-compiled once before the run: where PYTHONDONTWRITEBYTECODE is set (CI machines), every sweep driver,
# Ray trial worker and CLI subprocess of the suite would otherwise compile adgan's sources again.
test: $(STAMP)
	$(VENV)/bin/ruff check adgan tests benchmarks
	$(PY) -m compileall -q adgan tests
	$(VENV)/bin/pytest -q --timeout=900 --durations=25 -n $(TEST_WORKERS) --dist loadfile

# The suite without the tests marked slow (real Ray sweeps, loopback clusters, wheel builds, full datasets):
# a quick check while editing; `make test` (and CI) run everything.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check adgan tests benchmarks
	$(PY) -m compileall -q adgan tests
	$(VENV)/bin/pytest -q --timeout=900 -m "not slow" -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check adgan tests benchmarks

# Example datasets of one's own in every declarable format (PNG class folders, an MVTec-style folder, .npz,
# CSV and Parquet tables), written from Fashion-MNIST and the KDD99 file into data/user/ for the
# sweeps/own_*.yaml examples. Fashion-MNIST and the KDD99 file are found where adgan looks for them (or
# downloaded); KDD_DIR: a folder holding kddcup.data_10_percent[.gz], searched first.
KDD_DIR ?=
user-data: $(STAMP)
	$(PY) benchmarks/make_user_datasets.py data/user $(if $(KDD_DIR),--kdd-dir $(KDD_DIR))

sweep-smoke: $(STAMP)
	$(ADGAN) sweep sweeps/smoke.yaml $(SWEEP_ARGS)

sweep-mnist: $(STAMP)
	$(ADGAN) sweep sweeps/mnist.yaml $(SWEEP_ARGS)

sweep-fashion-mnist: $(STAMP)
	$(ADGAN) sweep sweeps/fashion_mnist.yaml $(SWEEP_ARGS)

sweep-kdd99: $(STAMP)
	$(ADGAN) sweep sweeps/kdd99.yaml $(SWEEP_ARGS)

sweep-cifar10: $(STAMP)
	$(ADGAN) sweep sweeps/cifar10.yaml $(SWEEP_ARGS)

# Ray cluster launcher (see docs/cluster.md); CLUSTER=cluster/local.yaml for machines you have.
# prepare.sh creates the Ray auth token and a wheel of this tree outside the repo (~/.adgan/).
RAY_EXEC_ARGS ?=
# GPU share per trial on the cluster (the specs ask for none, so that they run on any machine); a cluster
# without GPUs runs the trials on CPU and says so.
GPU ?= 0.25
# Where the sweep's results go: storage every node reaches (s3://bucket/prefix, gs://..., or a folder every
# node mounts, NFS); the head's own disk is out of the workers' reach. The spec's default budget is sized
# for a 2-core machine: a cluster runs the full one unless BUDGET says otherwise.
RESULTS ?=
BUDGET ?= full
# The machine driving the cluster: ray[default] for `ray job submit` and the dashboard, boto3 for AWS.
CLUSTER_STAMP := $(VENV)/.cluster-installed
$(CLUSTER_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[cluster]"
	touch $(CLUSTER_STAMP)

cluster-tools: $(CLUSTER_STAMP)

cluster-up: $(CLUSTER_STAMP)
	PYTHON=$(PY) bash cluster/prepare.sh
	$(VENV)/bin/ray up -y $(CLUSTER)

# (checked when the Makefile is read, before anything is installed or started)
ifneq ($(filter cluster-sweep,$(MAKECMDGOALS)),)
ifeq ($(RESULTS),)
$(error make cluster-sweep: give RESULTS=s3://your-bucket/sweeps (or gs://..., or a folder every node mounts): trials on the workers cannot write the head's own disk)
endif
endif
cluster-sweep: $(CLUSTER_STAMP)
	$(VENV)/bin/ray exec $(RAY_EXEC_ARGS) $(CLUSTER) '. ~/adgan/cluster/node-env.sh && cd ~/adgan && adgan sweep $(SPEC) --address auto --gpu $(GPU) --budget $(BUDGET) --results $(RESULTS) $(SWEEP_ARGS)'

cluster-down: $(CLUSTER_STAMP)
	$(VENV)/bin/ray down -y $(CLUSTER)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
