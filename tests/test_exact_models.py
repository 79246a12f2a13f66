"""--model PATH end to end: the weights figure comes from the files, the shape from config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vramest
from vramest.cli import main
from vramest.model.catalog import default_catalog


def test_config_json_gives_the_catalog_shape(tmp_path: Path) -> None:
    entry = default_catalog().find("meta-llama/Llama-3.1-8B")
    (tmp_path / "config.json").write_text(json.dumps(entry.config))
    from_file = vramest.estimate(model=str(tmp_path / "config.json"), ctx=8192)
    from_catalog = vramest.estimate(model="meta-llama/Llama-3.1-8B", ctx=8192)
    assert from_file.model.params == from_catalog.model.params == entry.published_params
    assert from_file.memory.to_json() == from_catalog.memory.to_json()
    assert from_file.model.source == "config-only"


def _tiny_llama_gguf(path: Path) -> Path:
    np = pytest.importorskip("numpy")
    gguf = pytest.importorskip("gguf")
    embed, ffn, vocab, layers = 256, 512, 320, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(2048)
    writer.add_embedding_length(embed)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    rng = np.random.default_rng(0)

    def f16(*shape: int):  # type: ignore[no-untyped-def]
        return rng.standard_normal(shape).astype(np.float16)

    writer.add_tensor("token_embd.weight", f16(vocab, embed))
    writer.add_tensor("output_norm.weight", rng.standard_normal(embed).astype(np.float32))
    writer.add_tensor("output.weight", f16(vocab, embed))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", rng.standard_normal(embed).astype(np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", rng.standard_normal(embed).astype(np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", f16(embed, embed))
        writer.add_tensor(f"blk.{i}.attn_k.weight", f16(128, embed))
        writer.add_tensor(f"blk.{i}.attn_v.weight", f16(128, embed))
        writer.add_tensor(f"blk.{i}.attn_output.weight", f16(embed, embed))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", f16(ffn, embed))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", f16(ffn, embed))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", f16(embed, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_weights_are_the_stored_tensor_bytes(tmp_path: Path) -> None:
    path = _tiny_llama_gguf(tmp_path / "tiny.gguf")
    result = vramest.estimate(model=str(path), ctx=1024)
    inspected = vramest.readers_inspect(path) if hasattr(vramest, "readers_inspect") else None
    from vramest.readers.inspect import inspect_path

    found = inspect_path(path)
    assert inspected is None
    assert result.memory.weights.bytes == found.weights_bytes
    # the analytic shape from the metadata agrees with the tensors
    assert result.model.shape.param_count() == found.params
    # KV: 2 layers × 2 KV heads × 64 head_dim × 2 (K and V) × 1024 tokens × 2 bytes (f16)
    assert result.memory.kv_cache.bytes == 2 * 2 * 64 * 2 * 1024 * 2


def test_gguf_in_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _tiny_llama_gguf(tmp_path / "tiny.gguf")
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data["params"], int) and isinstance(data["weights_bytes"], int)
    assert data["params_by_dtype"] and data["shape"]["model_type"] == "llama"


def _quantized_config(quant: dict[str, object]) -> dict[str, object]:
    config = dict(default_catalog().find("meta-llama/Llama-3.1-8B").config)
    config["quantization_config"] = quant
    return config


def test_ignore_lists_keep_modules_in_16_bit(tmp_path: Path) -> None:
    """An FP8 checkpoint that leaves the first and last blocks unquantized stores those
    blocks' 218M parameters (2 of 32 layers of Llama-3.1-8B) in bf16: 1 byte each more."""
    plain = _quantized_config({"quant_method": "fbgemm_fp8"})
    partial = _quantized_config({"quant_method": "fbgemm_fp8", "modules_to_not_convert":
                                 ["lm_head", "model.layers.0", "model.layers.31"]})
    sizes = []
    for i, config in enumerate((plain, partial)):
        path = tmp_path / f"c{i}.json"
        path.write_text(json.dumps(config))
        sizes.append(vramest.estimate(model=str(path)).memory.weights.bytes)
    per_block = 4096 * (4096 * 2 + 1024 * 2) + 3 * 4096 * 14336
    assert sizes[1] - sizes[0] == pytest.approx(2 * per_block, rel=1e-6)


def test_compressed_tensors_fp8_is_read_from_its_config_groups(tmp_path: Path) -> None:
    config = _quantized_config({"quant_method": "compressed-tensors", "ignore": ["lm_head"],
                                "config_groups": {"group_0": {"weights": {
                                    "num_bits": 8, "type": "float"}}}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert vramest.estimate(model=str(path)).settings.dtype == "fp8"


def test_pickled_weights_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    assert main(["--model", str(tmp_path)]) == 2
    assert "safetensors" in capsys.readouterr().err


def test_hub_id_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["--model", "some-org/not-in-the-catalog"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline" in err.lower()


@pytest.mark.slow
def test_safetensors_folder_weights_are_exact(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=512)
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path, safe_serialization=True)
    stored = sum(p.numel() * p.element_size() for p in model.parameters())
    result = vramest.estimate(model=str(tmp_path), ctx=256)
    assert result.memory.weights.bytes == stored
    assert result.model.params == sum(p.numel() for p in model.parameters())
    assert result.settings.dtype == "bf16"
    # asking for another precision switches to the analytic figure for that precision
    assert vramest.estimate(model=str(tmp_path), dtype="int8").memory.weights.bytes < stored
