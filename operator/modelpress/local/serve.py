"""The serving Deployment, run here: its init container pulls and verifies the
artifact, then its vLLM container serves it on 127.0.0.1.

The pod's own commands run: `modelpress pull URI DIR` (sha256 of every file
checked against the manifest) and `python3 -m vllm.entrypoints.openai.api_server
--model DIR --served-model-name MODEL <sized args>` with the sized environment (VLLM_CPU_KVCACHE_SPACE). Only what
ties it to a pod changes: the port, the listen address, volume paths, and by
default `--enforce-eager` (see `EAGER_NOTE`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpress.local import http
from modelpress.local.console import Console
from modelpress.local.errors import PortInUseError, ServerStartError
from modelpress.local.jobs import LOCAL_MODELPRESS, LocalMounts, local_invocation, pod_spec
from modelpress.local.processes import ManagedProcess, run_process
from modelpress.local.vllm import VllmInstall, replace_option, server_argv
from modelpress.plan import names

EAGER_NOTE = (
    "vLLM runs eagerly (--enforce-eager): on CPU, torch.compile's warm-up takes minutes and, "
    "with vllm-cpu 0.32, its cache does not reload; pass --compile for vLLM's default"
)
#: Variables of the calling environment that would make vLLM's Python import the
#: compressor's packages instead of its own.
_FOREIGN_PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
DEFAULT_START_TIMEOUT = 900.0
#: The serving pod's scratch volume, mounted at /tmp (TMPDIR, HOME).
TMP_VOLUME = "tmp"


@dataclass
class LocalServer:
    """A vLLM server started for one Deployment."""

    deployment: Mapping[str, Any]
    process: ManagedProcess
    base_url: str
    model_name: str
    model_dir: Path
    temp_dir: Path | None = None
    start_seconds: float = 0.0
    ready: bool = False

    @property
    def variant(self) -> str | None:
        return _template_labels(self.deployment).get(names.LABEL_VARIANT)

    @property
    def key(self) -> str | None:
        return _template_labels(self.deployment).get(names.LABEL_KEY)

    def stop(self) -> None:
        self.process.stop()
        self.ready = False
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def _template_labels(deployment: Mapping[str, Any]) -> Mapping[str, str]:
    template = (deployment.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}


def _option(argv: Sequence[str], option: str) -> str | None:
    for index, item in enumerate(argv):
        if item == option and index + 1 < len(argv):
            return argv[index + 1]
        if item.startswith(option + "="):
            return item.split("=", 1)[1]
    return None


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The serving container's environment without the caller's Python settings."""
    return {k: v for k, v in env.items() if k not in _FOREIGN_PYTHON_ENV}


def local_server_command(
    container_argv: Sequence[str], install: VllmInstall, port: int, *, compile: bool
) -> list[str]:
    """The vLLM container's command, on 127.0.0.1:`port`."""
    argv = server_argv(install, container_argv)
    argv = replace_option(argv, "--port", str(port))
    argv = replace_option(argv, "--host", http.LOOPBACK)
    if not compile and "--enforce-eager" not in argv:
        argv.append("--enforce-eager")
    return argv


def prune_other_models(models_dir: Path, keep: str) -> None:
    """Remove artifacts of earlier runs from the local models volume; keep `keep`."""
    if not models_dir.is_dir():
        return
    for entry in models_dir.iterdir():
        if entry.name != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def start_server(
    deployment: Mapping[str, Any],
    install: VllmInstall,
    *,
    port: int,
    work_dir: Path,
    console: Console,
    compile: bool = False,
    timeout: float = DEFAULT_START_TIMEOUT,
    modelpress: Sequence[str] = LOCAL_MODELPRESS,
) -> LocalServer:
    """Pull the artifact as the init container does, start vLLM, and wait until it is healthy.

    ServerStartError (with the end of vLLM's log) when it exits or is not ready
    within `timeout` seconds; PortInUseError when the port is taken.
    """
    http.check_port_free(port)
    pod = pod_spec(deployment)
    containers = list(pod.get("containers") or [])
    if len(containers) != 1:
        raise ServerStartError(f"the serving pod has {len(containers)} containers; expected 1")
    # vLLM's engine talks over Unix sockets in TMPDIR: give the pod's /tmp a short path.
    temp = Path(tempfile.mkdtemp(prefix="modelpress-vllm-"))
    mounts = LocalMounts(scratch_dir=work_dir / "serving", volumes={TMP_VOLUME: temp})
    local: LocalServer | None = None
    try:
        for init in pod.get("initContainers") or []:
            _run_init(init, pod, mounts, deployment, work_dir / "logs", console, modelpress)
        server = local_invocation(containers[0], pod, mounts, modelpress=modelpress)
        argv = local_server_command(server.argv, install, port, compile=compile)
        model_dir = Path(_option(argv, "--model") or "")
        model_name = _option(argv, "--served-model-name") or str(model_dir)
        base_url = f"http://{http.LOOPBACK}:{port}"
        with console.step(f"start vLLM ({install.distribution} {install.version})") as step:
            process = ManagedProcess(
                argv,
                env=server_environment(server.env),
                log_path=work_dir / "logs" / "vllm.log",
                on_line=step.line,
                cwd=server.cwd,
            )
            local = LocalServer(deployment, process, base_url, model_name, model_dir, temp)
            _wait_ready(local, timeout)
            local.start_seconds = time.monotonic() - process.started
    except BaseException:
        if local is not None:
            local.stop()
        shutil.rmtree(temp, ignore_errors=True)
        raise
    local.ready = True
    return local


def _run_init(
    init: Mapping[str, Any],
    pod: Mapping[str, Any],
    mounts: LocalMounts,
    deployment: Mapping[str, Any],
    logs: Path,
    console: Console,
    modelpress: Sequence[str],
) -> None:
    """One init container (`modelpress pull`), to completion; ServerStartError if it fails."""
    invocation = local_invocation(init, pod, mounts, modelpress=modelpress)
    if invocation.argv[len(modelpress) : len(modelpress) + 1] == ("pull",):
        key = _template_labels(deployment).get(names.LABEL_KEY)
        if key:
            prune_other_models(Path(invocation.argv[-1]).parent, key)
    with console.step("copy the artifact and verify every file's sha256") as step:
        result = run_process(
            invocation.argv,
            env=invocation.env,
            cwd=invocation.cwd,
            log_path=logs / f"serving-{invocation.name}.log",
            on_line=step.line,
        )
        if not result.ok:
            tail = " | ".join(result.tail[-3:])
            raise ServerStartError(
                f"init container {invocation.name} failed (exit code {result.exit_code}): "
                f"{tail}; log: {result.log_path}"
            )


def _wait_ready(server: LocalServer, timeout: float) -> None:
    process = server.process
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            tail = process.tail
            text = "\n".join(tail)
            if "Address already in use" in text or "address already in use" in text:
                port = server.base_url.rsplit(":", 1)[1]
                raise PortInUseError(
                    f"vLLM could not listen on port {port}: it is in use; pass --port with a "
                    "free port (--port 0 picks one)"
                )
            last = " | ".join(tail[-5:])
            raise ServerStartError(
                f"vLLM exited with code {code} before it was ready: {last}; "
                f"full log: {process.log_path}"
            )
        if http.healthy(server.base_url):
            return
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"vLLM was not ready after {timeout:.0f} s (raise --start-timeout); "
                f"log: {process.log_path}"
            )
        time.sleep(1.0)
