"""The status vocabulary: condition types and the reasons a condition can carry.

Every reason the operator writes is a member of `Reason`, and each member carries
its severity, so whether a reason means "someone must act", "it may pass on its
own", "work in progress" or "all is well" is decided here, once. A misspelt
reason is an AttributeError at import, not a condition nobody matches on.
The table in docs/operator.md is generated from these members (`failure_table`).
"""

from __future__ import annotations

from enum import StrEnum

from modelpress.api.severity import Severity


class ConditionType(StrEnum):
    """Condition types of the resource (first six) and of each variant (the rest)."""

    READY = "Ready"
    SOURCE_READY = "SourceReady"
    VARIANTS_READY = "VariantsReady"
    SERVING = "Serving"
    RECONCILING = "Reconciling"
    """True while work is under way (kstatus: InProgress); mirrors Ready's reason."""
    STALLED = "Stalled"
    """True when someone must act (kstatus: Failed); mirrors Ready's reason."""
    COMPRESSED = "Compressed"
    QUALITY_GATE = "QualityGate"
    FITS = "Fits"


class Reason(StrEnum):
    """A CamelCase word a program can match on, with its severity and meaning."""

    severity: Severity
    conditions: tuple[ConditionType, ...]
    meaning: str

    def __new__(
        cls, value: str, severity: Severity, conditions: tuple[ConditionType, ...], meaning: str
    ) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.severity = severity
        member.conditions = conditions
        member.meaning = meaning
        return member

    @property
    def failed(self) -> bool:
        """Someone must act (Warning Event, phase Failed)."""
        return self.severity is Severity.FAILURE

    @property
    def warns(self) -> bool:
        """Worth a Warning Event when its condition is not True."""
        return self.severity in (Severity.FAILURE, Severity.WARNING)

    @property
    def pending(self) -> bool:
        """No news: waiting, or told by another condition."""
        return self.severity is Severity.PENDING

    # --- failures: someone must act -----------------------------------------------------
    INVALID_SPEC = (
        "InvalidSpec",
        Severity.FAILURE,
        (ConditionType.READY,),
        "the API server accepted the spec but the operator's models reject it; the message "
        "names the field (children are left as they are)",
    )
    SECRET_NOT_FOUND = (
        "SecretNotFound",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the storage or Hub token Secret, or the key in it, is missing",
    )
    INVALID_SECRET = (
        "InvalidSecret",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the storage Secret is unusable (keys missing or not allowed)",
    )
    STORE_UNAVAILABLE = (
        "StoreUnavailable",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the store could not be read; nothing is created or deleted meanwhile",
    )
    STORE_NOT_ALLOWED = (
        "StoreNotAllowed",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the store is one the operator may not reach for this model (file://, no Secret "
        "where the operator's own identity is not lent, an endpoint not allowed)",
    )
    UNTRUSTED_RECORD = (
        "UntrustedRecord",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the store's source record is malformed or points outside the model's store: it is "
        "not followed",
    )
    IMAGE_NOT_ALLOWED = (
        "ImageNotAllowed",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY, ConditionType.COMPRESSED, ConditionType.SERVING),
        "spec.compression.image or spec.serving.image is not under an allowed prefix",
    )
    FETCH_FAILED = (
        "FetchFailed",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the fetch Job failed (with the pod's termination message)",
    )
    FETCH_INCOMPLETE = (
        "FetchIncomplete",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY,),
        "the fetch Job succeeded but the source record or base model is not in the store",
    )
    JOB_FAILED = (
        "JobFailed",
        Severity.FAILURE,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "a compression Job failed after its retries (with the Job's Failed condition and the "
        "pod's termination message)",
    )
    PUBLISH_MISSING = (
        "PublishMissing",
        Severity.FAILURE,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "the Job succeeded but its artifact is not in the store",
    )
    RECIPE_DOES_NOT_FIT_MODEL = (
        "RecipeDoesNotFitModel",
        Severity.FAILURE,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "the recipe cannot apply to the base model (a group size that does not divide a "
        "layer, a prune that leaves no layer, a sequence longer than the model's positions); "
        "found from its config.json before any Job runs",
    )
    ARTIFACT_CORRUPT = (
        "ArtifactCorrupt",
        Severity.FAILURE,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "the variant's stored manifest cannot be read; the message names it and the "
        "repair command (`modelpress verify URI --repair`)",
    )
    OUT_OF_MEMORY = (
        "OutOfMemory",
        Severity.FAILURE,
        (ConditionType.SOURCE_READY, ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "a Job ran out of host or GPU memory; the message names the field to raise",
    )
    COMPRESSION_DOES_NOT_FIT = (
        "CompressionDoesNotFit",
        Severity.FAILURE,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "`spec.compression.gpu` cannot hold the work (numbers in the message)",
    )
    UNKNOWN_GPU_PRODUCT = (
        "UnknownGpuProduct",
        Severity.FAILURE,
        (ConditionType.COMPRESSED, ConditionType.FITS, ConditionType.SERVING),
        "`spec.compression.gpu` or `spec.serving.gpu` names a product not in the catalog",
    )
    QUALITY_GATE_FAILED = (
        "QualityGateFailed",
        Severity.FAILURE,
        (ConditionType.QUALITY_GATE, ConditionType.SERVING),
        "the variant is worse than the gate allows (numbers in the message)",
    )
    DOES_NOT_FIT = (
        "DoesNotFit",
        Severity.FAILURE,
        (ConditionType.FITS, ConditionType.SERVING),
        "the variant does not fit the serving GPUs (numbers in the message)",
    )
    NO_CPU_KERNEL = (
        "NoCpuKernel",
        Severity.FAILURE,
        (ConditionType.FITS, ConditionType.SERVING),
        "vLLM's CPU kernels cannot run the variant's scheme (int8 weight-only serves on GPUs; "
        "int4 weight-only needs AVX-512 CPUs)",
    )
    SIZING_FAILED = (
        "SizingFailed",
        Severity.FAILURE,
        (ConditionType.FITS, ConditionType.SERVING),
        "the variant cannot be sized (no usable config.json, or serving settings sizing refuses)",
    )
    NO_VARIANT_QUALIFIES = (
        "NoVariantQualifies",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "`auto` found nothing servable (each variant's reason is listed)",
    )
    VARIANT_FAILED = (
        "VariantFailed",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "the variant named by `serving.variant` could not be built",
    )
    UNKNOWN_VARIANT = (
        "UnknownVariant",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "`serving.variant` names no variant",
    )
    NAME_CONFLICT = (
        "NameConflict",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "a Deployment or Service with the name the model needs exists and was not created "
        "for it: it is left alone",
    )
    ROLLOUT_STALLED = (
        "RolloutStalled",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "the Deployment exceeded its progress deadline",
    )
    AUTOSCALER_UNAVAILABLE = (
        "AutoscalerUnavailable",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "the cluster does not serve the autoscaler's API (KEDA's ScaledObject, or an HPA)",
    )
    SCALE_TO_ZERO_UNAVAILABLE = (
        "ScaleToZeroUnavailable",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "`autoscaling.minReplicas` is 0 and the operator scales with an HPA, which cannot",
    )
    MULTI_NODE_UNAVAILABLE = (
        "MultiNodeUnavailable",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "the served variant spans several nodes and the cluster does not serve LeaderWorkerSet",
    )
    REPLICAS_DO_NOT_FIT = (
        "ReplicasDoNotFit",
        Severity.FAILURE,
        (ConditionType.SERVING,),
        "`autoscaling.minReplicas` needs more GPUs than the platform has for serving",
    )

    # --- warnings: may resolve on their own --------------------------------------------
    JOB_RETRYING = (
        "JobRetrying",
        Severity.WARNING,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "an attempt of a compression Job failed and the Job retries",
    )

    # --- work in progress -----------------------------------------------------------------
    FETCHING = (
        "Fetching",
        Severity.ACTIVE,
        (ConditionType.SOURCE_READY,),
        "the fetch Job is created, pending or running",
    )
    COMPRESSING = (
        "Compressing",
        Severity.PENDING,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "a compression Job is created, pending or running",
    )
    WAITING_FOR_SOURCE = (
        "WaitingForSource",
        Severity.PENDING,
        (ConditionType.COMPRESSED, ConditionType.VARIANTS_READY),
        "variants wait for the base model",
    )
    WAITING_FOR_VARIANTS = (
        "WaitingForVariants",
        Severity.PENDING,
        (ConditionType.SERVING,),
        "`auto` chooses once every variant is built and evaluated",
    )
    WAITING_FOR_VARIANT = (
        "WaitingForVariant",
        Severity.PENDING,
        (ConditionType.SERVING,),
        "the named variant is not built and evaluated yet",
    )
    WAITING_FOR_SIZING = (
        "WaitingForSizing",
        Severity.PENDING,
        (ConditionType.SERVING,),
        "the named variant is not sized yet",
    )
    NOT_EVALUATED = (
        "NotEvaluated",
        Severity.PENDING,
        (ConditionType.QUALITY_GATE,),
        "the variant is not built yet",
    )
    NOT_SIZED = (
        "NotSized",
        Severity.PENDING,
        (ConditionType.FITS,),
        "the variant is not built yet",
    )
    ROLLING_OUT = (
        "RollingOut",
        Severity.ACTIVE,
        (ConditionType.SERVING,),
        "the serving Deployment is rolling out",
    )

    # --- good outcomes ------------------------------------------------------------------
    READY = (
        "Ready",
        Severity.OK,
        (ConditionType.READY,),
        "everything the spec asks for is done",
    )
    STORED = (
        "Stored",
        Severity.OK,
        (ConditionType.SOURCE_READY,),
        "the base model is in the store",
    )
    BUILT = (
        "Built",
        Severity.OK,
        (ConditionType.VARIANTS_READY,),
        "every variant is built and evaluated",
    )
    PUBLISHED = (
        "Published",
        Severity.OK,
        (ConditionType.COMPRESSED,),
        "the variant's artifact is committed in the store",
    )
    PASSED = (
        "Passed",
        Severity.OK,
        (ConditionType.QUALITY_GATE,),
        "the variant is within the quality gate",
    )
    FITS = (
        "Fits",
        Severity.OK,
        (ConditionType.FITS,),
        "the variant fits the serving target",
    )
    AVAILABLE = (
        "Available",
        Severity.OK,
        (ConditionType.SERVING,),
        "the chosen variant serves on every replica",
    )
    SERVING_DISABLED = (
        "ServingDisabled",
        Severity.OK,
        (ConditionType.SERVING,),
        "`serving.variant` is none",
    )
    SMALLEST_QUALIFYING = (
        "SmallestQualifying",
        Severity.OK,
        (ConditionType.SERVING,),
        "`auto` chose the smallest variant that passes the gate and fits",
    )
    CHOSEN = (
        "Chosen",
        Severity.OK,
        (ConditionType.SERVING,),
        "the variant named by `serving.variant` is served",
    )


def parse_reason(value: object) -> Reason | None:
    """The member for a reason read back from a stored status; None for any other text
    (a reason from another version, or one written by hand)."""
    return _BY_VALUE.get(str(value))


_BY_VALUE = {reason.value: reason for reason in Reason}


def failure_table() -> str:
    """The Markdown table of the reasons that need someone to act, for docs/operator.md."""
    rows = ["| reason | condition | what happened |", "| --- | --- | --- |"]
    for reason in Reason:
        if reason.failed:
            where = ", ".join(str(c) for c in reason.conditions)
            rows.append(f"| `{reason}` | {where} | {reason.meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(failure_table(), end="")
