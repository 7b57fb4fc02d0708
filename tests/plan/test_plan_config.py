"""OperatorConfig: camelCase YAML with defaults; every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpress import __version__
from modelpress.api.keys import OUTPUT_VERSION
from modelpress.config import ConfigError, OperatorConfig, load_config, parse_config
from modelpress.sizing import GPU_CATALOG
from modelpress.sizing.units import GiB


def test_defaults_work_without_a_file() -> None:
    config = load_config(None)
    assert config == OperatorConfig()
    assert config.images.compressor.endswith(f"compressor:{__version__}")
    assert config.images.compressor_cuda.endswith("-cuda")
    assert config.compressor_version == OUTPUT_VERSION, "not the package version"
    assert config.namespaces == [] and config.peering.standalone
    assert set(GPU_CATALOG) <= set(config.catalog)


def test_a_full_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        """
images: {compressor: r/c:1, compressorCuda: r/c:1-cuda, serving: r/s:1}
imagePullPolicy: Always
imagePullSecrets: [regcred]
gpuCatalog:
  nvidia-l4: {memoryGiB: 23}
  acme-x1: {memoryGiB: 48, productLabel: ACME-X1, maxPerNode: 4, tolerations: []}
jobs: {serviceAccountName: jobs, ttlSecondsAfterFinished: 600, defaultCpu: "4", memoryHeadroomGiB: 1}
servingServiceAccountName: vllm
namespaces: [ml, research]
resyncSeconds: 30
workerLimit: 8
watch: {serverTimeoutSeconds: 120, inactivityTimeoutSeconds: 300}
peering: {standalone: false, name: modelpress}
"""
    )
    config = load_config(path)
    assert config.images.serving == "r/s:1"
    assert config.catalog["nvidia-l4"].memory_bytes == 23 * GiB
    acme = config.catalog["acme-x1"]
    assert acme.memory_bytes == 48 * GiB and acme.max_per_node == 4 and acme.tolerations == []
    assert acme.node_selector == {"nvidia.com/gpu.product": "ACME-X1"}
    assert config.jobs.ttl_seconds_after_finished == 600 and config.jobs.default_cpu == "4"
    assert config.namespaces == ["ml", "research"] and config.worker_limit == 8
    assert config.watch.server_timeout_seconds == 120 and not config.peering.standalone


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"imags": {}}, "imags: unknown setting"),
        ({"jobs": {"defaultCpu": "lots"}}, "jobs.defaultCpu"),
        (
            {"gpuCatalog": {"new-gpu": {"productLabel": "X"}}},
            "new-gpu is a new product: give its memory",
        ),
        ({"workerLimit": 0}, "workerLimit"),
        ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy"),
    ],
)
def test_mistakes_name_the_key(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match="invalid") as error:
        parse_config(data)
    assert expected in str(error.value)


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(listed)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == OperatorConfig()
