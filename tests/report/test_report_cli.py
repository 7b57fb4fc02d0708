"""`modelpress report`: from a file (a CompressedModel, the benchmark's JSON) or from the
cluster by name; a clear message for everything it cannot read."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from tests.operator.cluster import kubeconfig, running_cluster
from tests.report.pictures import BENCHMARK, model_document

from modelpress.cli import main


def test_a_model_from_kubectl_get_gives_both_files_and_a_summary(tmp_path, capsys) -> None:
    source = tmp_path / "tiny.yaml"
    source.write_text(yaml.safe_dump(model_document()))
    assert main(["report", str(source), "-o", str(tmp_path / "out" / "tiny")]) == 0
    printed = capsys.readouterr().out
    assert "S served: w4" in printed
    assert (tmp_path / "out" / "tiny.png").stat().st_size > 10_000
    assert "<svg" in (tmp_path / "out" / "tiny.html").read_text()


def test_the_benchmark_result_with_a_gate(tmp_path, capsys) -> None:
    assert main(["report", str(BENCHMARK), "--gate", "0.1", "-o", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "gate: perplexity at most +10% over the base model" in printed
    assert "w4a16-gptq" in printed


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        ("kind: Deployment\n", "expected a CompressedModel"),
        ("a: [1\n", "tiny.yaml"),
        ("---\na: 1\n---\nb: 2\n", "holds 2 documents"),
    ],
)
def test_what_cannot_be_read_is_a_one_line_message(tmp_path, capsys, content, words) -> None:
    source = tmp_path / "tiny.yaml"
    if content is not None:
        source.write_text(content)
    assert main(["report", str(source), "-o", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert words in error and error.startswith("modelpress report:")
    assert not (tmp_path / "x.png").exists()


def test_a_gate_in_percent_is_refused(tmp_path, capsys) -> None:
    assert main(["report", str(BENCHMARK), "--gate", "110"]) == 2
    assert "give 0.1 for 10 %" in capsys.readouterr().err


async def test_a_model_read_from_the_cluster_by_name(tmp_path, monkeypatch, capsys) -> None:
    document = model_document()
    async with running_cluster() as (cluster, url):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", url)))
        collection = "/apis/modelpress.dev/v1alpha1/namespaces/ml/compressedmodels"
        body = {k: v for k, v in document.items() if k != "status"}
        async with cluster.post(collection, json=body) as response:
            assert response.status < 400, await response.text()
        async with cluster.patch(
            f"{collection}/tiny/status", json={"status": document["status"]}
        ) as response:
            assert response.status < 400, await response.text()
        out = tmp_path / "from-cluster"
        code = await asyncio.to_thread(main, ["report", "tiny", "-n", "ml", "-o", str(out)])
        assert code == 0, capsys.readouterr().err
        assert "ml/tiny: size vs quality" in capsys.readouterr().out
        assert out.with_suffix(".png").exists()

        code = await asyncio.to_thread(main, ["report", "absent", "-n", "ml"])
        assert code == 2
        assert "no CompressedModel 'absent' in namespace ml" in capsys.readouterr().err
        assert cluster.status_violations == []


def test_without_a_kubeconfig_a_name_says_what_to_do(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["report", "tiny"]) == 2
    assert "no kubeconfig was found" in capsys.readouterr().err
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["report", "tiny"]) == 2
    assert "the kubeconfig cannot be read" in capsys.readouterr().err
