"""Local mode: a CompressedModel run on one machine with the operator's own planner.

Jobs become local processes (`run_job` takes a Job manifest as the planner
builds it), the store is a `file://` directory, and the serving Deployment
becomes a local vLLM server. Nothing here imports torch or kopf.
"""

from modelpress.local.errors import (
    JobManifestError,
    LocalRunError,
    PortInUseError,
    ServerStartError,
    VllmNotFoundError,
)
from modelpress.local.jobs import (
    Invocation,
    JobResult,
    LocalMounts,
    job_invocations,
    local_invocation,
    run_job,
)
from modelpress.local.processes import ManagedProcess, ProcessResult, run_process
from modelpress.local.vllm import VllmInstall, find_vllm

__all__ = [
    "Invocation",
    "JobManifestError",
    "JobResult",
    "LocalMounts",
    "LocalRunError",
    "ManagedProcess",
    "PortInUseError",
    "ProcessResult",
    "ServerStartError",
    "VllmInstall",
    "VllmNotFoundError",
    "find_vllm",
    "job_invocations",
    "local_invocation",
    "run_job",
    "run_process",
]
