"""Someone allowed to create, patch or edit the status of a CompressedModel tries to
reach beyond it (emulated cluster, moto S3). Each attempt is refused with a clear
condition, and nothing outside the model's own store prefix is touched: the whole
bucket is listed before and after."""

from __future__ import annotations

from tests.operator.conftest import Harness, model_manifest


def _plant_other_teams_data(harness: Harness) -> list[str]:
    client = harness.store.client()
    for key in ("other-team/artifacts/k1/manifest.json", "other-team/models/m/weights.bin"):
        client.put_object(Bucket=harness.store.bucket, Key=key, Body=b"theirs")
    return harness.store.keys()


async def test_an_edited_status_is_put_back_to_the_truth(harness: Harness) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    honest = harness.status("tiny")
    forged = [
        dict(v, artifactUri=f"s3://{harness.store.bucket}/other-team/") for v in honest["variants"]
    ]
    await harness.patch_status("tiny", {"variants": forged, "serving": {"variant": "w8"}})
    assert harness.status("tiny")["serving"]["variant"] == "w8"

    def repaired() -> bool:
        status = harness.status("tiny")
        return status["variants"] == honest["variants"] and status["serving"] == honest["serving"]

    await harness.wait(repaired, "the status to be written again from the truth", timeout=10)


async def test_deletion_never_follows_an_edited_status_out_of_the_model_prefix(
    harness: Harness,
) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store, deletionPolicy="Delete"))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    await harness.stop_operator()  # so that nothing repairs the status before the delete
    before = _plant_other_teams_data(harness)
    victims = [f"s3://{harness.store.bucket}/other-team/", f"s3://{harness.store.bucket}/base/"]
    status = harness.status("tiny")
    forged = [dict(v, artifactUri=uri) for v, uri in zip(status["variants"], victims, strict=True)]
    await harness.patch_status("tiny", {"variants": forged})

    await harness.start_operator()
    await harness.delete("tiny")
    await harness.wait(lambda: harness.model("tiny") is None, "tiny to be gone", timeout=30)
    after = harness.store.keys()
    outside = [k for k in before if not k.startswith("store/artifacts/")]
    assert [k for k in outside if k not in after] == [], "nothing outside its artifacts went"
    assert harness.store.committed("artifacts") == [], "its own artifacts did go"
