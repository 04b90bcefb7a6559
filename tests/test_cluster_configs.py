"""Cluster configurations under cluster/, checked with Ray's own validators and parsers, scripts run for real.

- Launcher YAMLs: Ray's JSON schema (``ray/autoscaler/ray-schema.json``), then the preparation and
  validation that ``ray up`` runs before it contacts a cloud; every ``ray start`` line is parsed by Ray's CLI.
- KubeRay manifests: the fields the RayCluster/RayJob CRDs require, Ray's own translation of the RayCluster
  into autoscaler node types, and the RayJob entrypoint parsed by adgan's real CLI.
- Security: token authentication on every Ray process, the dashboard off public interfaces, no secret in a
  file.
- ``cluster/node-env.sh`` and ``cluster/prepare.sh`` run for real in a temporary HOME.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import ray
import ray.autoscaler
import torch
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start_cli

from adgan.cli import build_parser
from adgan.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHERS = ["aws-gpu.yaml", "local.yaml"]
SECRET_ENV = ("RAY_AUTH_TOKEN", "WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _launcher(name: str) -> dict[str, Any]:
    return _yaml(CLUSTER / name)


def _ray_schema() -> dict[str, Any]:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _ray_start_calls(command: str) -> list[tuple[dict[str, str], list[str]]]:
    """``(env assignments, args)`` of each ``ray start`` in a shell line (split at ``;``, ``&&``, ``||``)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True  # words stay whole ($RAY_HEAD_IP:6379); ; && || still split
    tokens = list(lexer)
    calls, segment = [], []
    for tok in [*tokens, ";"]:
        if tok in (";", "&&", "||", "&", "|"):
            env = {}
            while segment and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", segment[0]):
                key, _, value = segment.pop(0).partition("=")
                env[key] = value
            if segment[:2] == ["ray", "start"]:
                calls.append((env, segment[2:]))
            segment = []
        else:
            segment.append(tok)
    return calls


def _parse_ray_start(args: list[str]) -> dict[str, Any]:
    """Parse ``ray start`` arguments with Ray's real click command (unknown flags: ``click.UsageError``)."""
    args = [a.replace("$RAY_HEAD_IP", "10.0.0.1") for a in args]
    return ray_start_cli.make_context("ray start", args).params


def _head_and_worker_starts(cfg: dict[str, Any]) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    out = []
    for role in ("head", "worker"):
        calls = [c for cmd in cfg[f"{role}_start_ray_commands"] for c in _ray_start_calls(cmd)]
        assert len(calls) == 1, f"{role}_start_ray_commands should start Ray exactly once, found {calls}"
        env, args = calls[0]
        out.append((role, env, _parse_ray_start(args)))
    return out


# ----- launcher configs -----
@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_validates_against_rays_schema_and_launcher(name: str) -> None:
    cfg = _launcher(name)
    jsonschema.validate(cfg, _ray_schema())
    # What `ray up` does with the file before it touches a provider: defaults, node types, validation.
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_schema_check_has_teeth() -> None:
    cfg = _launcher("aws-gpu.yaml")
    cfg["head_start_ray_command"] = cfg.pop("head_start_ray_commands")  # a typo in a key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, _ray_schema())
    with pytest.raises(click.UsageError):
        _parse_ray_start(["--head", "--dashboard-hots=127.0.0.1"])


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_start_commands_use_token_auth_and_a_loopback_dashboard(name: str) -> None:
    for role, env, params in _head_and_worker_starts(_launcher(name)):
        assert env.get("RAY_AUTH_MODE") == "token", f"{name}: {role} starts Ray without RAY_AUTH_MODE=token"
        assert params["head"] == (role == "head")
        if role == "head":
            assert params["dashboard_host"] == "127.0.0.1", f"{name}: dashboard on {params['dashboard_host']}"
            assert params["port"] == 6379
        else:
            assert params["address"] == "10.0.0.1:6379"


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_file_mounts_keep_secrets_outside_the_repo(name: str) -> None:
    mounts = _launcher(name)["file_mounts"]
    assert mounts["~/.adgan/cluster-secrets"] == "~/.adgan/cluster-secrets"
    for remote, local in mounts.items():
        if local.startswith("~"):
            assert REPO not in Path(os.path.expanduser(local)).resolve().parents, f"{local} is in the repo"
        else:  # relative to the repository root, where `ray up` runs
            assert (REPO / local).is_dir(), f"{name}: file_mounts {remote}: {local} is not in the repository"
    # The start commands source node-env.sh from the synced cluster/ directory.
    assert mounts["~/adgan/cluster"] == "./cluster"


def test_aws_config_shape_and_security_group() -> None:
    cfg = _launcher("aws-gpu.yaml")
    types = cfg["available_node_types"]
    head, workers = types[cfg["head_node_type"]], [t for k, t in types.items() if k != cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    assert len(workers) == 1 and workers[0]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert 1 <= workers[0]["min_workers"] < workers[0]["max_workers"] <= cfg["max_workers"]
    run_options = cfg["docker"]["run_options"]
    assert any(o.startswith("--shm-size=") for o in run_options)
    # The image is not a CUDA base image: the GPU workers' containers must ask the NVIDIA runtime for GPUs.
    assert "-e NVIDIA_VISIBLE_DEVICES=all" in cfg["docker"]["worker_run_options"]
    assert "NVIDIA_VISIBLE_DEVICES" not in " ".join(run_options + cfg["docker"].get("head_run_options", []))
    # Only the launcher's own rules (intra-cluster + SSH): no Ray port opened to any address range.
    assert cfg["provider"]["security_group"]["IpPermissions"] == []


def test_local_config_has_placeholder_addresses_and_pins_the_dev_versions() -> None:
    cfg = _launcher("local.yaml")
    provider = cfg["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]
    setup = " ".join(cfg["setup_commands"])
    assert f'"ray[default,tune]=={ray.__version__}"' in setup
    assert f'"torch=={torch.__version__.split("+")[0]}"' in setup


# ----- KubeRay -----
def _pod_templates(cluster_spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("head", cluster_spec["headGroupSpec"]["template"])] + [
        (g["groupName"], g["template"]) for g in cluster_spec["workerGroupSpecs"]
    ]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _assert_token_env(env: dict[str, dict[str, Any]], where: str) -> None:
    assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: no RAY_AUTH_MODE=token"
    ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "adgan-ray-auth", "key": "auth_token"}, where


def test_raycluster_holds_the_fields_kuberay_requires() -> None:
    docs = list(yaml.safe_load_all((KUBERAY / "raycluster.yaml").read_text()))
    assert len(docs) == 1
    rc = docs[0]
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,45}[a-z0-9])?", rc["metadata"]["name"])
    spec = rc["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert all(isinstance(v, str) for v in spec["headGroupSpec"]["rayStartParams"].values())
    for group, template in _pod_templates(spec):
        pod = template["spec"]
        assert pod["containers"] and all(c["name"] and c["image"] for c in pod["containers"]), group
        volumes = {v["name"] for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert set(mounts.values()) <= volumes, f"{group}: a volumeMount names no volume"
        assert "/dev/shm" in mounts, group
        # Results on object storage by default: credentials from the pods' ServiceAccount (IRSA / workload
        # identity), no shared volume needed; the workers' is not the head's, to which KubeRay binds the
        # autoscaler's Role (it may change pods and the RayCluster).
        own = "adgan-ray" if group == "head" else "adgan-ray-worker"
        assert pod.get("serviceAccountName") == own, group
    assert "nvidia.com/gpu" not in json.dumps(spec["headGroupSpec"])
    for g in spec["workerGroupSpecs"]:
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(g)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert all(isinstance(v, str) for v in g["rayStartParams"].values())
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1


def test_rays_kuberay_autoscaler_reads_a_cpu_head_and_gpu_workers() -> None:
    rc = _yaml(KUBERAY / "raycluster.yaml")
    rc["metadata"]["namespace"] = "default"  # filled in by the API server
    types = _derive_autoscaling_config_from_ray_cr(rc)["available_node_types"]
    assert types["headgroup"]["resources"]["CPU"] == 0 and "GPU" not in types["headgroup"]["resources"]
    (group,) = rc["spec"]["workerGroupSpecs"]
    gpu = types[group["groupName"]]
    assert gpu["resources"]["GPU"] == 1 and gpu["resources"]["CPU"] >= 1
    assert (gpu["min_workers"], gpu["max_workers"]) == (group["minReplicas"], group["maxReplicas"])


def test_rayjob_runs_the_sweep_on_its_cluster_and_shuts_down() -> None:
    job = _yaml(KUBERAY / "rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,45}[a-z0-9])?", job["metadata"]["name"])
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    assert spec["rayClusterSpec"] == _yaml(KUBERAY / "raycluster.yaml")["spec"], "rayjob.yaml drifted"
    # The entrypoint, parsed by adgan's real CLI: it joins the job's cluster and writes to the bucket.
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "adgan"
    args = build_parser().parse_args(argv[1:])
    assert args.address == "auto" and args.results.startswith("s3://")
    # The specs ask for no GPU (they run anywhere); the job gives each trial a share of a worker's GPU.
    assert args.gpu is not None and 0 < args.gpu <= 1
    workdir = re.search(r"^WORKDIR\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M).group(1)
    spec_in_repo = REPO / Path(args.spec).relative_to(workdir)
    # The spec baked into the image is a valid sweep spec, with the budget asked for: a cluster runs the
    # spec's full budget (the default one is sized for a laptop), with no offline W&B runs left on pods.
    assert load_spec(spec_in_repo, budget=args.budget).name and args.budget == "full" and args.no_wandb
    # Neither a cluster that never gets ready nor a sweep that hangs runs (and bills) without end.
    assert 0 < spec["preRunningDeadlineSeconds"] <= 3600 and spec["activeDeadlineSeconds"] > 0
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    _assert_token_env(_env(submitter["containers"][0]), "submitter")


def test_kuberay_pods_pull_a_rebuilt_tag_and_the_docs_ask_for_the_operator_that_reads_them() -> None:
    """The docs rebuild one tag with new code: a node that cached it must pull it again. authOptions'
    secretName (the token's Secret) exists from KubeRay 1.6.0 on: every stated minimum says so."""
    for name in ("raycluster.yaml", "rayjob.yaml"):
        doc = _yaml(KUBERAY / name)
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        pods = [t["spec"] for _, t in _pod_templates(spec)] + (
            [doc["spec"]["submitterPodTemplate"]["spec"]] if name == "rayjob.yaml" else [])
        assert all(c["imagePullPolicy"] == "Always" for pod in pods for c in pod["containers"]), name
        assert spec["authOptions"]["secretName"]
    texts = [(p, p.read_text()) for p in [REPO / "docs" / "cluster.md", *KUBERAY.glob("*.yaml")]]
    minimum = re.compile(r"KubeRay(?: operator)?\W+(\d+\.\d+(?:\.\d+)?) or newer")
    stated = {(p.name, v) for p, t in texts for v in minimum.findall(t)}
    assert stated and all(v == "1.6.0" for _, v in stated), stated


def test_make_cluster_sweep_needs_shared_results_and_runs_the_full_budget() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RESULTS", "BUDGET", "MAKEFLAGS")}
    refused = subprocess.run(["make", "-n", "cluster-sweep"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0 and "make cluster-sweep: give RESULTS=s3://" in refused.stderr
    planned = subprocess.run(["make", "-n", "cluster-sweep", "RESULTS=s3://bucket/sweeps"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    (line,) = [ln for ln in planned.stdout.splitlines() if "ray exec" in ln]
    argv = shlex.split(shlex.split(line)[-1].split("&& ")[-1])
    args = build_parser().parse_args(argv[1:])
    assert args.results == "s3://bucket/sweeps" and args.budget == "full" and args.address == "auto"


def test_object_storage_is_the_default_with_credentials_from_the_platform() -> None:
    """Results go to a bucket; the nodes get its credentials from the platform's identity (IRSA / workload
    identity on Kubernetes, an instance profile on AWS), never from a key in a file or a Secret."""
    head, worker = list(yaml.safe_load_all((KUBERAY / "serviceaccount.yaml").read_text()))
    for sa, name in ((head, "adgan-ray"), (worker, "adgan-ray-worker")):
        assert (sa["apiVersion"], sa["kind"], sa["metadata"]["name"]) == ("v1", "ServiceAccount", name)
        role = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
        assert sa["metadata"]["labels"]["app.kubernetes.io/part-of"] == "adgan"
    for manifest in KUBERAY.glob("*.yaml"):
        assert "AWS_SECRET_ACCESS_KEY" not in manifest.read_text(), manifest.name
    workers = [t for k, t in _launcher("aws-gpu.yaml")["available_node_types"].items() if k != "head"]
    assert all(w["node_config"]["IamInstanceProfile"]["Name"] for w in workers)
    # The head names its own profile: Ray's default one (ray-autoscaler-v1) may not pass the workers' role
    # to the instances its autoscaler launches (iam:PassRole), so no worker would ever start.
    head = _launcher("aws-gpu.yaml")["available_node_types"]["head"]["node_config"]
    assert head["IamInstanceProfile"]["Name"] == "adgan-ray-head"
    docs = " ".join((REPO / "docs" / "cluster.md").read_text().split())
    assert "`iam:PassRole` on `arn:aws:iam::ACCOUNT:role/adgan-ray-worker`" in docs
    # The uninitialised placeholder bucket, the same in the RayJob and the launcher's instructions.
    entrypoint = _yaml(KUBERAY / "rayjob.yaml")["spec"]["entrypoint"]
    assert "s3://your-adgan-results/" in entrypoint
    assert "s3://your-adgan-results/" in (CLUSTER / "aws-gpu.yaml").read_text()


def test_networkpolicy_admits_only_the_clusters_pods_and_the_operator() -> None:
    policy = _yaml(KUBERAY / "networkpolicy.yaml")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    job = _yaml(KUBERAY / "rayjob.yaml")
    templates = [t for _, t in _pod_templates(_yaml(KUBERAY / "raycluster.yaml")["spec"])]
    for template in [*templates, job["spec"]["submitterPodTemplate"]]:
        assert selected.items() <= template["metadata"]["labels"].items(), "a Ray pod escapes the policy"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        peers = rule["from"]
        assert peers and all("ipBlock" not in p for p in peers), "address ranges may not reach Ray"
        if peers != [{"podSelector": {"matchLabels": selected}}]:
            assert [p["port"] for p in rule["ports"]] == [8265], "outsiders reach only the job API"


def test_every_ray_process_on_kuberay_uses_token_auth_and_stays_internal() -> None:
    spec = _yaml(KUBERAY / "raycluster.yaml")["spec"]
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and not head.get("enableIngress")
    assert head["rayStartParams"].get("dashboard-host", "127.0.0.1") != "0.0.0.0"
    # The operator calls the dashboard too (a RayJob's status): it learns the token from authOptions, the
    # Secret's key auth_token being the one every container reads.
    assert spec["authOptions"] == {"mode": "token", "secretName": "adgan-ray-auth"}
    _assert_token_env({e["name"]: e for e in spec["autoscalerOptions"]["env"]}, "autoscaler")
    for group, template in _pod_templates(spec):
        for c in template["spec"]["containers"]:
            _assert_token_env(_env(c), f"{group}/{c['name']}")


# ----- secrets, images, versions -----
def _cluster_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _dicts(obj: Any) -> Any:
    """Every mapping inside a parsed YAML document."""
    if isinstance(obj, dict):
        yield obj
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            yield from _dicts(item)


def test_no_secret_and_no_public_bind_in_any_cluster_file() -> None:
    for path in _cluster_files():
        text = path.read_text()
        rel = path.relative_to(REPO)
        assert "0.0.0.0" not in text, f"{rel} binds or opens something to every address"
        assert not re.search(r"[0-9a-fA-F]{32,}", text), f"{rel} holds what looks like a token or API key"
        secret_names = r"RAY_AUTH_TOKEN|WANDB_API_KEY|AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID"
        assert not re.search(rf"\b({secret_names})\s*[:=]\s*['\"]?[\w-]{{8,}}", text), rel
        assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), f"{rel} holds what looks like an AWS access key"
        assert not re.search(r"(token|secret|\.pem|\.key)$", path.name, re.I), f"{rel}: a secret file?"
    for manifest in KUBERAY.glob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            for var in _dicts(doc):
                if var.get("name") in SECRET_ENV:
                    assert "value" not in var and "secretKeyRef" in var["valueFrom"], (manifest.name, var)


def test_images_and_versions_agree_with_the_dev_environment() -> None:
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile, re.M))
    assert args["RAY_VERSION"] == ray.__version__
    assert args["TORCH_VERSION"] == torch.__version__.split("+")[0]
    assert re.search(r"^ENV[^\n]*(\\\n[^\n]*)*RAY_AUTH_MODE=token", dockerfile, re.M)
    image = _launcher("aws-gpu.yaml")["docker"]["image"]
    rc, job = _yaml(KUBERAY / "raycluster.yaml"), _yaml(KUBERAY / "rayjob.yaml")
    images = {c["image"] for _, t in _pod_templates(rc["spec"]) for c in t["spec"]["containers"]}
    images |= {c["image"] for c in job["spec"]["submitterPodTemplate"]["spec"]["containers"]}
    assert images == {image}


def test_dockerfile_copies_only_existing_unignored_paths() -> None:
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    lines = (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    assert ignore[0] == "*"  # deny by default: the context is the whole repository, .venv included
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M):
        for src in line.split()[:-1]:
            assert (REPO / src).exists(), f"Dockerfile: COPY {src}: not in the repository"
            assert f"!{src}" in ignore or f"!{src}/" in ignore, f"{src} is excluded from the build context"


@pytest.mark.slow  # a wheel build, about 7 s
def test_the_image_installs_adgan_from_what_it_copies(tmp_path: Path) -> None:
    """The Dockerfile's `pip install .` of its build context (its COPY lines, nothing else): the wheel
    builds (setup.py included: without it setuptools refuses the flat layout) and holds the specs."""
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    context = tmp_path / "image"
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M):
        *sources, dest = line.split()
        for src in sources:
            target = context / (dest.rstrip("/") + "/" + Path(src).name if dest.endswith("/") else dest)
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / src, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "wheel"), str(context)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("adgan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert {"adgan/cli.py", "adgan/specs/mnist.yaml"} <= set(zf.namelist())


# ----- the scripts, run for real -----
def _source_node_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": os.environ["PATH"], **(extra or {})}
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c", "set -eu; . cluster/node-env.sh; env -0"],
                         cwd=REPO, env=env, capture_output=True, check=True).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def test_node_env_without_secrets_still_forces_token_auth(tmp_path: Path) -> None:
    env = _source_node_env(tmp_path, {"ADGAN_DATA_DIR": "/data/here"})
    assert env["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_TOKEN_PATH" not in env and "WANDB_API_KEY" not in env
    assert env["ADGAN_DATA_DIR"] == "/data/here"


def test_node_env_points_ray_at_the_synced_token_and_exports_wandb(tmp_path: Path) -> None:
    secrets_dir = tmp_path / ".adgan" / "cluster-secrets"
    secrets_dir.mkdir(parents=True)
    token = "ab" * 32
    (secrets_dir / "ray_auth_token").write_text(token)
    (secrets_dir / "wandb_api_key").write_text("local-wandb-key\n")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "adgan-venv")], check=True)
    env = _source_node_env(tmp_path)
    assert env["RAY_AUTH_TOKEN_PATH"] == str(secrets_dir / "ray_auth_token")
    assert env["WANDB_API_KEY"] == "local-wandb-key"
    assert env["VIRTUAL_ENV"] == str(tmp_path / "adgan-venv")  # machines without Docker run from the venv
    # Ray's own token loader, in a process with exactly this environment, finds the token.
    probe = ("from ray._raylet import AuthenticationTokenLoader as L; "
             "print(L.instance().get_raw_token(ignore_auth_mode=True))")
    env["PATH"] = os.environ["PATH"]
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == token


@pytest.mark.slow  # two wheel builds, about 15 s
def test_prepare_makes_private_secrets_and_a_wheel_of_the_tree(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "PYTHON": sys.executable}
    had_build = (REPO / "build").exists()
    subprocess.run(["bash", "cluster/prepare.sh"], cwd=REPO, env=env, check=True, capture_output=True)
    secrets_dir, wheel_dir = tmp_path / ".adgan" / "cluster-secrets", tmp_path / ".adgan" / "cluster-wheel"
    token_file = secrets_dir / "ray_auth_token"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    (wheel,) = wheel_dir.glob("adgan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"adgan/cli.py", "adgan/sweep/runner.py", "adgan/specs/mnist.yaml",
            "adgan/specs/smoke.yaml"} <= names  # the specs too: `adgan sweep mnist` on the nodes
    assert re.search(r"^adgan\s*=\s*adgan\.cli:main", entry_points, re.M)
    assert had_build or not (REPO / "build").exists(), "prepare.sh left build/ in the working tree"
    # Run again: the token is kept (the cluster's nodes hold it), the wheel rebuilt.
    subprocess.run(["bash", "cluster/prepare.sh"], cwd=REPO, env=env, check=True, capture_output=True)
    assert token_file.read_text() == token and len(list(wheel_dir.glob("*.whl"))) == 1
    # The launcher configs mount exactly these directories.
    for name in LAUNCHERS:
        locals_ = {v.replace("~", str(tmp_path), 1) for v in _launcher(name)["file_mounts"].values()
                   if v.startswith("~")}
        assert locals_ == {str(secrets_dir), str(wheel_dir)}


def test_prepare_refuses_to_run_outside_the_repository_root(tmp_path: Path) -> None:
    r = subprocess.run(["bash", str(CLUSTER / "prepare.sh")], cwd=tmp_path,
                       env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True)
    assert r.returncode == 2 and "repository root" in r.stderr
    assert not (tmp_path / ".adgan").exists()
