"""Run a Kubernetes Job's pod as local processes: what a kubelet would do, minus the cluster.

The container's command and args run unchanged, with its environment, except
for what only exists in a pod:

- Secret volumes: a Secret given in `LocalMounts.secrets` (a directory with one
  file per key, as Kubernetes mounts it) stands in for the volume; without one
  the volume is absent, environment variables pointing into it are dropped, and
  the local environment (AWS_*, HF_TOKEN, ~/.aws) applies instead.
- emptyDir volumes: a fresh directory under `LocalMounts.scratch_dir`.
- hostPath volumes: the same path.
- `valueFrom.secretKeyRef`: read from the local Secret directory, else dropped.

Paths of mounted volumes are rewritten wherever they appear in the command,
args, env values and workingDir. The `modelpress` executable is this
interpreter's modelpress, so a Job runs the very code of the checkout it was
planned from. Init containers run first, in order, as a kubelet runs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelpress.local.errors import JobManifestError
from modelpress.local.processes import LineCallback, ProcessResult, run_process

#: How `modelpress` is started locally: the running interpreter, so the same checkout runs.
LOCAL_MODELPRESS: tuple[str, ...] = (
    sys.executable,
    "-c",
    "import sys; from modelpress.cli import main; sys.exit(main())",
)

#: Variables set in every local Job: unbuffered output, so progress arrives as it happens.
LOCAL_ENV = {"PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class LocalMounts:
    """Local stand-ins for the pod's volumes."""

    scratch_dir: Path
    """emptyDir volumes become directories below this one."""

    secrets: Mapping[str, Path] = field(default_factory=dict)
    """Secret name -> local directory holding one file per key."""

    volumes: Mapping[str, Path] = field(default_factory=dict)
    """Volume name -> local directory, before any other rule (e.g. a short temp dir:
    Unix socket paths, which vLLM puts in TMPDIR, must stay under 108 bytes)."""


@dataclass(frozen=True)
class Invocation:
    """One container as a local process."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path | None
    dropped_env: tuple[str, ...]
    """Variables of the manifest left out because they point at what is not here."""


@dataclass(frozen=True)
class JobResult:
    """How the pod's containers ended (init containers first)."""

    job: str
    containers: tuple[ProcessResult, ...]

    @property
    def ok(self) -> bool:
        return bool(self.containers) and all(result.ok for result in self.containers)

    @property
    def failed(self) -> ProcessResult | None:
        return next((result for result in self.containers if not result.ok), None)

    @property
    def seconds(self) -> float:
        return sum(result.seconds for result in self.containers)


def pod_spec(job: Mapping[str, Any]) -> Mapping[str, Any]:
    """spec.template.spec of a Job or Deployment, or the spec of a bare Pod."""
    kind = job.get("kind")
    spec = job.get("spec")
    if not isinstance(spec, Mapping):
        raise JobManifestError(f"{_name(job)}: the manifest has no spec")
    if kind == "Pod":
        return spec
    if kind not in ("Job", "Deployment"):
        raise JobManifestError(
            f"{_name(job)}: expected a Job, a Deployment or a Pod, got kind {kind!r}"
        )
    template = (spec.get("template") or {}).get("spec")
    if not isinstance(template, Mapping):
        raise JobManifestError(f"{_name(job)}: the manifest has no spec.template.spec")
    return template


def _name(job: Mapping[str, Any]) -> str:
    metadata = job.get("metadata") or {}
    return f"{job.get('kind', '?')}/{metadata.get('name', '?')}"


def volume_paths(
    pod: Mapping[str, Any], container: Mapping[str, Any], mounts: LocalMounts
) -> dict[str, Path | None]:
    """Container mount path -> local path, or None for a Secret that is not here."""
    volumes = {volume.get("name"): volume for volume in pod.get("volumes") or []}
    mapped: dict[str, Path | None] = {}
    for mount in container.get("volumeMounts") or []:
        name = mount.get("name")
        volume = volumes.get(name)
        if volume is None:
            raise JobManifestError(
                f"container {container.get('name')!r} mounts volume {name!r}, "
                "which the pod does not define"
            )
        local = _local_volume(volume, mounts)
        sub_path = mount.get("subPath")
        if local is not None and sub_path:
            local = local / sub_path
        mapped[mount["mountPath"].rstrip("/") or "/"] = local
    return mapped


def _local_volume(volume: Mapping[str, Any], mounts: LocalMounts) -> Path | None:
    name = volume["name"]
    if name in mounts.volumes:
        path = Path(mounts.volumes[name])
        path.mkdir(parents=True, exist_ok=True)
        return path
    if "secret" in volume:
        secret = (volume["secret"] or {}).get("secretName", "")
        local = mounts.secrets.get(secret)
        return Path(local) if local is not None else None
    if "emptyDir" in volume:
        path = mounts.scratch_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    if "hostPath" in volume:
        return Path(volume["hostPath"]["path"])
    kinds = sorted(set(volume) - {"name"})
    raise JobManifestError(
        f"volume {name!r} ({', '.join(kinds) or 'no type'}) has no local equivalent: "
        "local Jobs support secret, emptyDir and hostPath volumes"
    )


def _containing_mount(text: str, paths: Mapping[str, Path | None]) -> str | None:
    """The longest mount path that `text` (a path) lies in, if any."""
    best = None
    for mount in paths:
        if (text == mount or text.startswith(mount.rstrip("/") + "/")) and (
            best is None or len(mount) > len(best)
        ):
            best = mount
    return best


def map_path(text: str, paths: Mapping[str, Path | None]) -> str | None:
    """`text` with a mounted path replaced by its local path; None when the volume is absent.

    Text that is not inside a mount, `--flag=/mount/path` forms included, is returned
    unchanged or rewritten in its value part.
    """
    prefix, sep, value = text.partition("=") if text.startswith("--") else ("", "", text)
    mount = _containing_mount(value, paths)
    if mount is None:
        return text
    local = paths[mount]
    if local is None:
        return None
    rest = PurePosixPath(value).relative_to(PurePosixPath(mount))
    mapped = str(local / rest) if str(rest) != "." else str(local)
    return f"{prefix}{sep}{mapped}"


def local_invocation(
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    mounts: LocalMounts,
    *,
    modelpress: Sequence[str] = LOCAL_MODELPRESS,
    base_env: Mapping[str, str] | None = None,
) -> Invocation:
    """The process that stands in for `container`. Pure apart from creating scratch dirs."""
    name = container.get("name", "?")
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if not command:
        raise JobManifestError(
            f"container {name!r} has no command or args: local Jobs cannot run an image's "
            "default entrypoint"
        )
    paths = volume_paths(pod, container, mounts)
    argv: list[str] = []
    for part in command:
        mapped = map_path(str(part), paths)
        if mapped is None:
            raise JobManifestError(
                f"container {name!r} passes {part!r}, inside a Secret volume that is not "
                "available locally: give that Secret as a local directory"
            )
        argv.append(mapped)
    if Path(argv[0]).name == "modelpress":
        argv[0:1] = list(modelpress)
    env = dict(os.environ if base_env is None else base_env)
    env.update(LOCAL_ENV)
    dropped: list[str] = []
    for entry in container.get("env") or []:
        key = entry["name"]
        value = _env_value(entry, mounts)
        mapped = map_path(value, paths) if value is not None else None
        if mapped is None:
            env.pop(key, None)
            dropped.append(key)
        else:
            env[key] = mapped
    working_dir = container.get("workingDir")
    cwd = None
    if working_dir:
        mapped_dir = map_path(working_dir, paths)
        cwd = Path(mapped_dir) if mapped_dir else None
    return Invocation(name, tuple(argv), env, cwd, tuple(dropped))


def _env_value(entry: Mapping[str, Any], mounts: LocalMounts) -> str | None:
    if "value" in entry:
        return str(entry["value"])
    source = entry.get("valueFrom") or {}
    ref = source.get("secretKeyRef")
    if ref:
        directory = mounts.secrets.get(ref.get("name", ""))
        if directory is not None and (Path(directory) / ref["key"]).is_file():
            return (Path(directory) / ref["key"]).read_text().strip()
    return None


def job_invocations(
    job: Mapping[str, Any],
    mounts: LocalMounts,
    *,
    modelpress: Sequence[str] = LOCAL_MODELPRESS,
    base_env: Mapping[str, str] | None = None,
) -> list[Invocation]:
    """Init containers, then the single main container, as local processes."""
    pod = pod_spec(job)
    containers = list(pod.get("containers") or [])
    if len(containers) != 1:
        raise JobManifestError(
            f"{_name(job)}: local Jobs run exactly one container, the pod has {len(containers)}"
        )
    return [
        local_invocation(c, pod, mounts, modelpress=modelpress, base_env=base_env)
        for c in [*(pod.get("initContainers") or []), containers[0]]
    ]


def run_job(
    job: Mapping[str, Any],
    mounts: LocalMounts,
    *,
    log_dir: Path,
    on_line: LineCallback | None = None,
    modelpress: Sequence[str] = LOCAL_MODELPRESS,
    base_env: Mapping[str, str] | None = None,
) -> JobResult:
    """Run one attempt of a Job's pod locally and say how it ended.

    Containers run in order and stop at the first failure, as a pod's init
    containers do. `spec.activeDeadlineSeconds` bounds the whole attempt; each
    container's output goes to `<log_dir>/<job>-<container>.log`.
    """
    invocations = job_invocations(job, mounts, modelpress=modelpress, base_env=base_env)
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    job_name = (job.get("metadata") or {}).get("name", "job")
    results: list[ProcessResult] = []
    spent = 0.0
    for invocation in invocations:
        remaining = None if deadline is None else max(float(deadline) - spent, 1.0)
        result = run_process(
            invocation.argv,
            env=invocation.env,
            cwd=invocation.cwd,
            log_path=log_dir / f"{job_name}-{invocation.name}.log",
            on_line=on_line,
            timeout=remaining,
        )
        results.append(result)
        spent += result.seconds
        if not result.ok:
            break
    return JobResult(job_name, tuple(results))
