"""Job manifests as local processes: the planner's own Jobs, mapped volumes and env."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.local.errors import JobManifestError
from modelpress.local.jobs import LOCAL_MODELPRESS, LocalMounts, job_invocations, map_path, run_job
from modelpress.plan import jobs, pods
from modelpress.plan.recipes import compress_job_args, source_job_args
from modelpress.plan.resources import compression_resources

SPEC = {
    "source": {"uri": "s3://models/base/smollm2/"},
    "storage": {"uri": "s3://artifacts/", "secretRef": {"name": "store"}},
    "variants": [{"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "rtn"}}],
    "evaluation": {"dataset": {"uri": "s3://data/eval.txt"}},
}


def spec(**changes: Any) -> CompressedModelSpec:
    return CompressedModelSpec.model_validate({**SPEC, **changes})


def test_fetch_job_runs_the_planned_command_with_local_paths(tmp_path: Path) -> None:
    job = jobs.fetch_job("m", "ns", spec(), OperatorConfig())
    (invocation,) = job_invocations(
        job, LocalMounts(scratch_dir=tmp_path), base_env={"PATH": "/bin"}
    )
    work = tmp_path / "work"
    assert list(invocation.argv) == [
        *LOCAL_MODELPRESS,
        *source_job_args(spec()),
        "--work-dir",
        str(work),
    ]
    assert work.is_dir(), "the emptyDir stands in as a directory"
    assert invocation.env["HOME"] == str(work)
    assert invocation.env["XDG_CACHE_HOME"] == str(work / ".cache")
    assert invocation.env["PATH"] == "/bin"
    # The storage Secret is not here: its variable is dropped, the local AWS env applies.
    assert pods.CREDENTIALS_DIR_ENV not in invocation.env
    assert invocation.dropped_env == (pods.CREDENTIALS_DIR_ENV,)


def test_a_local_secret_directory_stands_in_for_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    job = jobs.fetch_job("m", "ns", spec(), OperatorConfig())
    mounts = LocalMounts(scratch_dir=tmp_path / "scratch", secrets={"store": secret})
    (invocation,) = job_invocations(job, mounts, base_env={})
    assert invocation.env[pods.CREDENTIALS_DIR_ENV] == str(secret)
    assert invocation.dropped_env == ()


def test_compress_job_keeps_the_planner_arguments(tmp_path: Path) -> None:
    s = spec()
    variant = s.variants[0]
    sized = compression_resources(s, variant, 10**8, None, OperatorConfig())
    job = jobs.compress_job(
        "m",
        "ns",
        s,
        variant,
        "k" * 20,
        "s3://a/models/b/",
        "s3://a/artifacts/k/",
        sized,
        OperatorConfig(),
    )
    (invocation,) = job_invocations(job, LocalMounts(scratch_dir=tmp_path), base_env={})
    expected = compress_job_args(
        s, variant, "s3://a/models/b/", "s3://a/artifacts/k/", str(tmp_path / "work")
    )
    assert list(invocation.argv[len(LOCAL_MODELPRESS) :]) == expected


def pod_job(command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe"},
        "spec": {
            "activeDeadlineSeconds": 60,
            "template": {
                "spec": {
                    "containers": [{"name": "main", "command": command, **container}],
                    "volumes": [
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "creds", "secret": {"secretName": "absent"}},
                    ],
                }
            },
        },
    }


def test_run_job_runs_init_containers_then_the_main_one(tmp_path: Path) -> None:
    job = pod_job(
        [sys.executable, "-c", "import os; print('main sees', os.environ['GREETING'])"],
        env=[{"name": "GREETING", "value": "hello"}],
    )
    job["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "init", "command": [sys.executable, "-c", "print('init ran')"]}
    ]
    lines: list[str] = []
    result = run_job(
        job, LocalMounts(scratch_dir=tmp_path), log_dir=tmp_path / "logs", on_line=lines.append
    )
    assert result.ok, result
    assert lines == ["init ran", "main sees hello"]
    log = (tmp_path / "logs" / "probe-main.log").read_text().splitlines()
    assert log[0].startswith("=== ") and log[1:] == ["main sees hello"]


def test_a_failing_init_container_stops_the_pod(tmp_path: Path) -> None:
    job = pod_job([sys.executable, "-c", "print('main must not run')"])
    job["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "init", "command": [sys.executable, "-c", "import sys; sys.exit(4)"]}
    ]
    result = run_job(job, LocalMounts(scratch_dir=tmp_path), log_dir=tmp_path / "logs")
    assert not result.ok
    assert result.failed is not None and result.failed.exit_code == 4
    assert len(result.containers) == 1


def test_paths_inside_mounts_are_rewritten(tmp_path: Path) -> None:
    paths = {"/work": tmp_path / "w", "/secret": None}
    assert map_path("/work/a/b", paths) == str(tmp_path / "w" / "a" / "b")
    assert map_path("--dir=/work/x", paths) == f"--dir={tmp_path / 'w' / 'x'}"
    assert map_path("/workshop", paths) == "/workshop"
    assert map_path("/secret/key", paths) is None
    assert map_path("plain", paths) == "plain"


def test_an_argument_inside_an_absent_secret_is_refused(tmp_path: Path) -> None:
    job = pod_job(["cat", "/creds/token"], volumeMounts=[{"name": "creds", "mountPath": "/creds"}])
    with pytest.raises(JobManifestError, match="Secret volume that is not available locally"):
        job_invocations(job, LocalMounts(scratch_dir=tmp_path))


def test_volumes_without_a_local_equivalent_are_refused(tmp_path: Path) -> None:
    job = pod_job(["true"], volumeMounts=[{"name": "data", "mountPath": "/data"}])
    job["spec"]["template"]["spec"]["volumes"].append(
        {"name": "data", "persistentVolumeClaim": {"claimName": "x"}}
    )
    with pytest.raises(JobManifestError, match="persistentVolumeClaim"):
        job_invocations(job, LocalMounts(scratch_dir=tmp_path))


def test_other_kinds_and_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JobManifestError, match="expected a Job"):
        job_invocations({"kind": "Service", "spec": {}}, LocalMounts(scratch_dir=tmp_path))
    no_command = pod_job([])
    with pytest.raises(JobManifestError, match="no command"):
        job_invocations(no_command, LocalMounts(scratch_dir=tmp_path))
