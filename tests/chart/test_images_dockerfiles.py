"""The Dockerfiles pin what they build on, run as non-root, and install what the tests install.

No Docker engine is needed: these read the files the way a reviewer would.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest
from chart_render import ROOT, rendered_set

IMAGES = ROOT / "images"
DOCKERFILES = {name: IMAGES / name / "Dockerfile" for name in ("operator", "compressor", "serving")}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILES[name].read_text()
    text = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    pairs = []
    for line in text.splitlines():
        if line.strip():
            instruction, _, rest = line.strip().partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def _args(name: str) -> dict[str, str]:
    return dict(
        rest.split("=", 1)
        for instruction, rest in _instructions(name)
        if instruction == "ARG" and "=" in rest
    )


def _base_images(name: str) -> list[str]:
    args = _args(name)
    bases = []
    for instruction, rest in _instructions(name):
        if instruction == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            if not re.fullmatch(r"[a-z]+", image):  # a stage name
                bases.append(image)
    return bases


def _torch_pin() -> str:
    (requirement,) = [
        r
        for r in PYPROJECT["project"]["optional-dependencies"]["compress"]
        if r.startswith("torch")
    ]
    return requirement.split("==", 1)[1]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned_to_a_version(name):
    bases = _base_images(name)
    assert bases
    for image in bases:
        repository, _, tag = image.rpartition(":")
        assert repository and re.search(r"\d+\.\d+", tag), (
            f"{name}: {image} is not pinned to a version"
        )
        assert "latest" not in tag


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runs_as_a_non_root_numeric_user(name):
    users = [rest for instruction, rest in _instructions(name) if instruction == "USER"]
    assert users, f"{name} runs as root"
    uid = users[-1].split(":")[0]
    assert uid in {"65532", "1000"}, f"{name}: USER {users[-1]}"


def test_operator_pod_and_image_agree_on_user_and_command():
    (deployment,) = [o for o in rendered_set("defaults") if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    users = [rest for instruction, rest in _instructions("operator") if instruction == "USER"]
    assert str(pod["securityContext"]["runAsUser"]) == users[-1].split(":")[0]
    entrypoint = [
        rest for instruction, rest in _instructions("operator") if instruction == "ENTRYPOINT"
    ]
    assert entrypoint == ['["modelpress"]']
    (container,) = pod["containers"]
    assert "command" not in container and container["args"][0] == "operator"


def test_operator_image_has_no_torch():
    runs = " ".join(rest for instruction, rest in _instructions("operator") if instruction == "RUN")
    assert "torch" not in runs and "[compress]" not in runs


def test_compressor_installs_the_pinned_torch_then_the_compress_extra():
    args = _args("compressor")
    assert args["TORCH_VERSION"] == _torch_pin(), "TORCH_VERSION must match pyproject's torch pin"
    assert args["TORCH_VARIANT"] == "cpu"
    runs = [rest for instruction, rest in _instructions("compressor") if instruction == "RUN"]
    torch_step = next(i for i, run in enumerate(runs) if "torch==${TORCH_VERSION}" in run)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in runs[torch_step]
    project_step = next(i for i, run in enumerate(runs) if "/src[compress]" in run)
    assert torch_step < project_step, "torch goes in its own, earlier layer"


def test_serving_image_is_a_pinned_vllm_with_modelpress_on_path():
    (base,) = _base_images("serving")
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", base)
    runs = " ".join(rest for instruction, rest in _instructions("serving") if instruction == "RUN")
    assert "/opt/modelpress/bin/pip install /src" in runs
    assert "ln -s /opt/modelpress/bin/modelpress /usr/local/bin/modelpress" in runs
    assert "[compress]" not in runs, "vLLM brings its own torch; modelpress must not replace it"


def _in_build_context(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    included = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or any(
            fnmatch.fnmatchcase(part, pattern) for part in parts if "/" not in pattern
        ):
            included = negate
    return included


def test_build_context_holds_the_package_and_nothing_heavy():
    for path in (
        "pyproject.toml",
        "operator/modelpress/__init__.py",
        "operator/modelpress/cli/api.py",
    ):
        assert _in_build_context(path), f"{path} must be in the build context"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/pss.py",
        "benchmarks/x.py",
        "charts/modelpress/values.yaml",
        "operator/modelpress/__pycache__/x.pyc",
    ):
        assert not _in_build_context(path), f"{path} must stay out of the build context"
