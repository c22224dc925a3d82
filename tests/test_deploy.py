"""The Kubernetes deployment in deploy/: its files agree with Dagster, the code and each other.

No cluster runs here; what can be checked without one is: the instance file passes Dagster's
own schema and K8sRunLauncher's, its run rules are the embedded instance's, and every name
the manifests and the launcher share (config maps, secret, volume, service account, code
server) is defined once and used consistently.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher

from pipelines.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
EMBEDDED = REPO_ROOT / "dagster_home" / "dagster.yaml"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    documents = yaml.safe_load_all((DEPLOY / "k8s" / "lsr.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in documents if d}


def test_the_instance_file_passes_dagsters_schema_and_the_launchers() -> None:
    config, _ = dagster_instance_config(str(DEPLOY / "k8s"))  # raises on a wrong key or type
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "LSR_DAGSTER_POSTGRES_URL"}
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = validate_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, [e.message for e in result.errors]


def test_the_cluster_keeps_the_embedded_instances_run_rules() -> None:
    """One `duckdb` writer at a time and one run per exchange: the same limits, which in the
    cluster hold across nodes because they live in Postgres."""
    cluster, embedded = _yaml(DEPLOY / "k8s" / "dagster.yaml"), _yaml(EMBEDDED)
    assert cluster["concurrency"]["pools"] == embedded["concurrency"]["pools"]
    limits = cluster["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limits == embedded["concurrency"]["runs"]["tag_concurrency_limits"]
    assert cluster["run_monitoring"]["enabled"] and cluster["retention"] == embedded["retention"]


def test_the_manifests_define_what_the_launcher_and_each_other_name(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    launcher = _yaml(DEPLOY / "k8s" / "dagster.yaml")["run_launcher"]["config"]
    assert ("ServiceAccount", launcher["service_account_name"]) in manifests
    for name in launcher["env_config_maps"]:
        assert ("ConfigMap", name) in manifests
    claim = launcher["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in manifests
    assert all(
        d["metadata"].get("namespace", launcher["job_namespace"]) == "lsr"
        for d in manifests.values()
    )
    workspace = yaml.safe_load(
        manifests[("ConfigMap", "dagster-workspace")]["data"]["workspace.yaml"]
    )
    grpc = workspace["load_from"][0]["grpc_server"]
    service = manifests[("Service", grpc["host"])]
    assert service["spec"]["ports"][0]["port"] == grpc["port"]
    warehouse = manifests[("ConfigMap", "lsr-settings")]["data"]["LSR_WAREHOUSE"]
    assert warehouse.startswith(launcher["volume_mounts"][0]["mountPath"] + "/")


def test_the_code_server_serves_this_code_location(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    command = manifests[("Deployment", "lsr-code")]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    module = command[command.index("-m") + 1]
    attribute = command[command.index("-a") + 1]
    defs = getattr(importlib.import_module(module), attribute)
    assert {"load_landed", "ingest", "refresh_outputs"} <= {j.name for j in defs.jobs}
    assert command[command.index("-p") + 1] == "4000"


def test_every_setting_the_manifests_give_is_one_the_code_reads(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "pipelines").rglob("*.py"))
    given = manifests[("ConfigMap", "lsr-settings")]["data"]
    assert given["LSR_FETCH_ONLY"] == "1"  # the cluster's runs land; load_landed stores
    for name in given:
        assert re.search(rf"[\"']{name}[\"']", source), f"{name} is read nowhere"


def test_the_image_installs_the_pinned_lock_with_the_integrations() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "uv pip sync --system --compile-bytecode requirements.lock" in dockerfile
    lock = (REPO_ROOT / "requirements.lock").read_text()
    assert re.search(r"^dagster-k8s==", lock, re.MULTILINE)
    fsspec = re.search(r"^fsspec==(\S+)", lock, re.MULTILINE)
    assert fsspec and f"s3fs=={fsspec[1]}" in dockerfile  # s3fs releases track fsspec's
