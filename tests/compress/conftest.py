"""A tiny random Llama with a tokenizer trained offline on the example text.

Hidden size 128 and MLP width 256, so group sizes 32-128 divide every layer; four
layers, so layer-drop and students have room. Built once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "examples" / "data" / "calib.txt"
EVAL = REPO / "examples" / "data" / "eval.txt"


def build_tokenizer(texts: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def build_model(directory: Path, tokenizer, *, layers: int = 4, seed: int = 0, **overrides) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.eos_token_id,
        "dtype": "bfloat16",
    }
    config = LlamaConfig(**settings | overrides)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_w8_and_w4(store: str, evaluation: dict, tmp_path: Path) -> dict[str, dict]:
    """Two RTN variants of the base at `<store>models/tiny/`, one Job after the other with
    a shared evaluation cache, as two variants of one spec run: name -> metadata."""
    from modelpress.compress import compress_variant

    found = {}
    for name, scheme in (("w8", "W8A16"), ("w4", "W4A16")):
        (tmp_path / name).mkdir()
        variant = {"name": name, "quantize": {"scheme": scheme, "algorithm": "rtn"}}
        result = compress_variant(
            store + "models/tiny/", variant, evaluation, f"{store}artifacts/{name}/",
            work_dir=tmp_path / name, cache_dir=store + "evaluations/",
        )  # fmt: skip
        found[name] = result.metadata
    return found


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer([CALIB.read_text(), EVAL.read_text()])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_tokenizer) -> Path:
    """A checkpoint directory (bf16 safetensors, tokenizer, config)."""
    return build_model(tmp_path_factory.mktemp("tiny") / "base", tiny_tokenizer)


@pytest.fixture(scope="session")
def texts() -> dict[str, str]:
    """Calibration and held-out evaluation text files (disjoint)."""
    return {"calibration": str(CALIB), "evaluation": str(EVAL)}


@pytest.fixture
def store(tmp_path) -> str:
    """A local artifact store root as a file:// URI."""
    root = tmp_path / "store"
    root.mkdir()
    return f"file://{root}/"


@pytest.fixture
def published_base(tiny_model, store) -> str:
    """The tiny model published in the store, as `modelpress fetch` leaves a base."""
    from modelpress.storage import publish

    uri = store + "models/tiny/"
    publish(uri, tiny_model, {"source": {"huggingface": "org/tiny", "revision": "c0ffee"}})
    return uri


@pytest.fixture
def loaded_models(monkeypatch) -> list[str]:
    """The directory names every `load_model` call loads from, in order."""
    import modelpress.compress.checkpoint as checkpoint_module

    loaded: list[str] = []
    original = checkpoint_module.load_model

    def counting(directory, *args, **kwargs):
        loaded.append(Path(directory).name)
        return original(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "load_model", counting)
    return loaded
