"""The base model of a compression: the processes of one distributed run share a single
download of it instead of one each (the work directory is sized for one copy)."""

from __future__ import annotations

import threading
import time

import modelpress.storage as storage_module
from modelpress.compress.base import fetch_weights, open_base


def test_processes_sharing_a_directory_download_the_base_once(
    published_base, tmp_path, monkeypatch
):
    uri = published_base
    downloads = []
    original = storage_module.fetch

    def slow_fetch(*args, **kwargs):
        downloads.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other process to arrive meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(storage_module, "fetch", slow_fetch)
    shared = tmp_path / "work"
    found = []

    def process(rank: int) -> None:
        base = open_base(uri, tmp_path / f"scratch-{rank}", shared=shared)
        fetch_weights(base)
        found.append(base.directory)

    ranks = [threading.Thread(target=process, args=(rank,)) for rank in range(3)]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join()
    assert len(downloads) == 1, "one download for every process"
    assert len(set(found)) == 1 and found[0].parent == shared
    assert (found[0] / "model.safetensors").is_file() and (found[0] / "config.json").is_file()
    assert not any((tmp_path / f"scratch-{rank}").exists() for rank in range(3))


def test_without_sharing_each_run_downloads_into_its_own_scratch(
    tiny_model, published_base, tmp_path
):
    base = open_base(published_base, tmp_path / "scratch")
    fetch_weights(base)
    assert base.directory == tmp_path / "scratch" / "base"
    assert (base.directory / "model.safetensors").is_file()
    assert sorted(p.name for p in base.directory.iterdir()) == sorted(
        p.name for p in tiny_model.iterdir()
    ), "nothing of the sharing (locks, markers) inside the model's directory"
