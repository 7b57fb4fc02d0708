"""`modelpress run`: the operator's reconcile loop on one machine.

Each round observes the store and the local stand-ins, asks the operator's
planner (`plan_model`) what should exist, and carries out its answer: Jobs run
as local processes (one at a time), the serving Deployment becomes a local
vLLM server. The loop ends when the plan asks for nothing new. So the Jobs, the
content keys, the chosen variant, the vLLM arguments and the status are the
ones a cluster would have for the same spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpress.api.reasons import ConditionType
from modelpress.api.resource import CompressedModel
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import CompressedModelStatus
from modelpress.config import OperatorConfig, Trust
from modelpress.local import http
from modelpress.local.console import Console
from modelpress.local.errors import LocalRunError
from modelpress.local.jobs import JobResult, LocalMounts, run_job
from modelpress.local.serve import EAGER_NOTE, LocalServer, start_server
from modelpress.local.spec import (
    SpecError,
    check_local_inputs,
    check_named_variant,
    cpu_servable_schemes,
    cpu_serving_problem,
    local_spec,
)
from modelpress.local.uploads import remove_unpublished, unpublished_prefixes
from modelpress.local.vllm import VllmInstall, find_vllm, has_int4_kernel
from modelpress.local.world import LocalWorld, deployment_state, service_state
from modelpress.plan import names
from modelpress.plan.conditions import is_true, now_rfc3339
from modelpress.plan.observed import Owner
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import plan_model
from modelpress.plan.serving import endpoint as serving_endpoint

DEFAULT_WORK_DIR = Path("/var/tmp/modelpress/work")
LOCAL_TRUST = Trust(
    allow_file_stores=True,
    ambient_credentials_namespaces=["*"],
    store_endpoints=["*"],
    image_prefixes=[""],
)
LOCAL_NAMESPACE = "local"
SETUP_HINT = {"source.uri": "scripts/setup-local converts SmolLM2-135M-Instruct there"}


@dataclass(frozen=True)
class RunOptions:
    """How to run locally; everything else comes from the spec."""

    store: str | None = None
    """A file:// store instead of spec.storage.uri."""
    work_dir: Path = DEFAULT_WORK_DIR
    """Logs, Job scratch space, the serving copy of the artifact, status.json."""
    vllm: str | None = None
    port: int = 8000
    prompt: str = http.DEFAULT_PROMPT
    once: bool = False
    compile: bool = False
    start_timeout: float = 900.0
    max_tokens: int = 64
    serve: bool = True
    """False: compress and evaluate only, as with serving.variant none."""


@dataclass
class RunResult:
    """What a run did and found."""

    model: str
    status: CompressedModelStatus
    work_dir: Path
    reused: list[str] = field(default_factory=list)
    """Artifacts found already published ("base" for the base model, else variant names)."""
    built: list[str] = field(default_factory=list)
    """Artifacts this run computed."""
    failed: list[str] = field(default_factory=list)
    server: LocalServer | None = None
    answer: str | None = None
    endpoint: str | None = None
    """The OpenAI endpoint that answered: /v1/chat/completions, or /v1/completions for a
    model without a chat template."""
    served_root: str | None = None
    """The directory vLLM reports it loaded the model from (GET /v1/models, `root`)."""

    @property
    def ready(self) -> bool:
        return is_true(self.status.conditions, ConditionType.READY)


class LocalRun:
    """One run of one CompressedModel on this machine."""

    def __init__(
        self, model: CompressedModel, options: RunOptions, console: Console | None = None
    ) -> None:
        self.options = options
        self.console = console or Console()
        self.name = model.metadata.name
        prepared = local_spec(model.spec, options.store, serve=options.serve)
        self.spec: CompressedModelSpec = prepared.spec
        self.notes = prepared.notes
        # One machine, one user: their own files, credentials and images.
        config = OperatorConfig(trust=LOCAL_TRUST)
        self.owner = Owner(name=self.name, namespace=LOCAL_NAMESPACE, generation=1)
        self.work_dir = options.work_dir / self.name
        self.world = LocalWorld(self.spec, config)
        self.install: VllmInstall | None = None
        self.result = RunResult(self.name, CompressedModelStatus(), self.work_dir)
        self._announced: set[str] = set()
        self._built_keys: set[str] = set()

    @property
    def config(self) -> OperatorConfig:
        """The operator settings this run plans with, held by its world."""
        return self.world.config

    @property
    def store(self) -> str:
        return self.spec.storage.uri

    # --- before any work ---------------------------------------------------------

    def preflight(self) -> None:
        """Every check that needs no computation: inputs, the vLLM install, the port."""
        for note in self.notes:
            self.console.say(f"note: {note}")
        check_named_variant(self.spec)  # what no CPU serves, before looking for vLLM
        check_local_inputs(self.spec, SETUP_HINT)
        if self.spec.serving.variant != "none":
            self.install = find_vllm(self.options.vllm)
            int4 = has_int4_kernel(self.install)
            kernels = "with" if int4 else "WITHOUT"
            self.console.say(f"vLLM: {self.install.describe()}, {kernels} the int4 (W4A16) kernel")
            # The planner then sizes W4A16 variants as NoCpuKernel, and auto passes them by.
            self.world.config = self.config.model_copy(update={"cpu_int4_kernel": int4})
            check_named_variant(self.spec, cpu_servable_schemes(int4))
            if self.options.port == 0:
                self.options = _replace(self.options, port=http.free_port())
            http.check_port_free(self.options.port)

    # --- the loop ----------------------------------------------------------------

    def reconcile(self) -> RunResult:
        """Plan and act until the plan asks for nothing new."""
        previous: dict[str, Any] | None = None
        rounds = 4 + 2 * len(self.spec.variants)
        for _ in range(rounds):
            observed = self.world.observe()
            self._announce_reuse(observed)
            plan = plan_model(self.owner, self.spec, observed, self.config, previous, now_rfc3339())
            previous = plan.wire_status
            self.result.status = plan.status
            self._delete(plan.delete)
            # New children are in `create`, changed ones in `apply`; locally both mean
            # "make it so".
            wanted = [*plan.create, *plan.apply]
            jobs = [obj for obj in wanted if obj.get("kind") == "Job"]
            if jobs:
                for job in jobs:
                    self._run_job(job)
                continue
            if self._apply([obj for obj in wanted if obj.get("kind") != "Job"]):
                continue
            return self.result
        raise LocalRunError(
            f"the plan did not settle after {rounds} rounds; status: "
            f"{json.dumps(self.result.status.to_wire().get('conditions'))[:500]}"
        )

    def _announce_reuse(self, observed: Any) -> None:
        if observed.source is not None and observed.base is not None:
            if "base" not in self._announced and not self.world.jobs:
                self.console.say(f"reused base model {observed.base.uri} (already published)")
                self.result.reused.append("base")
            self._announced.add("base")
            locations = variant_locations(self.spec, observed.source, self.config)
            for variant in self.spec.variants:
                key, uri = locations[variant.name]
                if key in observed.artifacts and variant.name not in self._announced:
                    self._announced.add(variant.name)
                    if key not in self._built_keys:
                        self.console.say(f"reused {variant.name}: {uri} (already published)")
                        self.result.reused.append(variant.name)

    def _job_title(self, job: Mapping[str, Any]) -> str:
        labels = (job.get("metadata") or {}).get("labels") or {}
        if labels.get(names.LABEL_COMPONENT) == names.FETCH:
            source = self.spec.source.uri or (
                self.spec.source.huggingface.repo if self.spec.source.huggingface else "?"
            )
            return f"fetch the base model from {source}"
        name = labels.get(names.LABEL_VARIANT, "?")
        variant = next((v for v in self.spec.variants if v.name == name), None)
        recipe = f" ({variant.describe()})" if variant else ""
        return f"compress {name}{recipe}"

    def _run_job(self, job: Mapping[str, Any]) -> None:
        job_name = job["metadata"]["name"]
        labels = job["metadata"].get("labels") or {}
        scratch = self.work_dir / "jobs" / job_name
        before = unpublished_prefixes(self.store)
        result: JobResult | None = None
        try:
            with self.console.step(self._job_title(job)) as step:
                result = run_job(
                    job,
                    LocalMounts(scratch_dir=scratch),
                    log_dir=self.work_dir / "logs",
                    on_line=step.line,
                )
                if not result.ok:
                    failed = result.failed
                    assert failed is not None
                    raise _JobFailed(
                        f"exit code {failed.exit_code}" + (", deadline" if failed.timed_out else "")
                    )
        except _JobFailed:
            pass
        finally:
            for uri in remove_unpublished(self.store, before):
                self.console.say(f"removed the unfinished upload {uri}")
            _remove_tree(scratch)
        assert result is not None
        state = self.world.record_job(job, result)
        variant = labels.get(names.LABEL_VARIANT)
        if result.ok:
            if variant:
                self._built_keys.add(labels.get(names.LABEL_KEY, ""))
                self.result.built.append(variant)
            return
        self.result.failed.append(variant or "base")
        failed = result.failed
        assert failed is not None
        self.console.say(f"  {state.name} failed; last lines of {failed.log_path}:")
        for line in failed.tail[-12:]:
            self.console.say(f"    {line}")

    def _delete(self, deletions: list[tuple[str, str]]) -> None:
        for kind, name in deletions:
            if kind == "Job":
                self.world.jobs.pop(name, None)
            elif kind == "Deployment" and self.result.server is not None:
                self.result.server.stop()
                self.result.server = None
                self.world.deployment = None
            elif kind == "Service":
                self.world.service = None

    def _apply(self, objects: list[dict[str, Any]]) -> bool:
        """Carry out the Deployment and Service; True when something changed."""
        changed = False
        for obj in objects:
            if obj.get("kind") == "Service":
                self.world.service = service_state(obj)
                changed = True
        deployment = next((obj for obj in objects if obj.get("kind") == "Deployment"), None)
        if deployment is not None:
            self._serve(deployment)
            changed = True
        return changed

    def _serve(self, deployment: dict[str, Any]) -> None:
        labels = (deployment["spec"]["template"]["metadata"] or {}).get("labels") or {}
        name = labels.get(names.LABEL_VARIANT)
        variant = next((v for v in self.spec.variants if v.name == name), None)
        servable = cpu_servable_schemes(self.config.cpu_int4_kernel)
        problem = cpu_serving_problem(variant, servable) if variant else None
        if problem:
            raise SpecError(f"the planner chose {name} to serve, but {problem}")
        if self.result.server is not None:
            self.result.server.stop()
            self.result.server = None
        assert self.install is not None
        if not self.options.compile:
            self.console.say(f"note: {EAGER_NOTE}")
        server = start_server(
            deployment,
            self.install,
            port=self.options.port,
            work_dir=self.work_dir,
            console=self.console,
            compile=self.options.compile,
            timeout=self.options.start_timeout,
        )
        self.result.server = server
        self.world.deployment = deployment_state(deployment, ready=True)
        self.console.say(
            f"vLLM serves {name} as {server.model_name!r} at {server.base_url}/v1 "
            f"(ready {server.start_seconds:.0f} s after start)"
        )

    # --- after the loop ------------------------------------------------------------

    def ask(self) -> str | None:
        """Check what vLLM loaded and send one chat request; the answer."""
        server = self.result.server
        if server is None:
            return None
        models = http.served_models(server.base_url)
        root = next((m.get("root") for m in models if m.get("id") == server.model_name), None)
        self.result.served_root = root
        if root is not None and Path(root).resolve() != server.model_dir.resolve():
            raise LocalRunError(
                f"vLLM serves {root}, not the verified copy {server.model_dir}: another server "
                f"answers on port {self.options.port}?"
            )
        try:
            answer = http.chat(
                server.base_url,
                server.model_name,
                self.options.prompt,
                max_tokens=self.options.max_tokens,
            )
            self.result.endpoint = "/v1/chat/completions"
        except http.NoChatTemplateError as error:
            self.console.say(f"note: {error}; asking through /v1/completions instead")
            answer = http.complete(
                server.base_url,
                server.model_name,
                self.options.prompt,
                max_tokens=self.options.max_tokens,
            )
            self.result.endpoint = "/v1/completions"
        self.result.answer = answer
        return answer

    def write_status(self) -> Path:
        """The final status, as the operator would write it, in `<work-dir>/status.json`.

        The one difference: the endpoint is the local server's, not the in-cluster
        Service's, in `serving.endpoint` and in the Serving condition's message.
        """
        status = self.result.status
        server = self.result.server
        if server is not None and status.serving is not None:
            cluster = serving_endpoint(self.name, LOCAL_NAMESPACE)
            local = f"{server.base_url}/v1"
            status = status.model_copy(
                update={
                    "serving": status.serving.model_copy(update={"endpoint": local}),
                    "conditions": [
                        c.model_copy(update={"message": c.message.replace(cluster, local)})
                        for c in status.conditions
                    ],
                }
            )
        self.result.status = status
        path = self.work_dir / "status.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(status.to_wire(), indent=2) + "\n")
        return path

    def stop(self) -> None:
        if self.result.server is not None:
            self.result.server.stop()


class _JobFailed(Exception):
    """Ends a Job's progress step as failed; the run goes on with the other variants."""


def _replace(options: RunOptions, **changes: Any) -> RunOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
