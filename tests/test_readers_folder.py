"""Model folders: shard discovery, hostile indexes, pickles, and quantized checkpoint counting.

Weights are written with the safetensors package's numpy API, so the files are real.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramest.errors import InputError
from vramest.readers.folder import read_model_folder
from vramest.readers.inspect import inspect_path

np = pytest.importorskip("numpy")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

CONFIG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1}


def save(folder: Path, name: str, tensors: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    safetensors_numpy.save_file(tensors, str(path))
    return path


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def data_bytes(*files: Path) -> int:
    total = 0
    for path in files:
        raw = path.read_bytes()
        total += len(raw) - 8 - int.from_bytes(raw[:8], "little")
    return total


def test_index_and_shards(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", CONFIG)
    first = save(tmp_path, "model-00001-of-00002.safetensors",
                 {"model.embed_tokens.weight": np.zeros((10, 4), np.float16)})
    second = save(tmp_path, "model-00002-of-00002.safetensors",
                  {"lm_head.weight": np.zeros((10, 4), np.float32)})
    write_json(tmp_path / "model.safetensors.index.json", {"weight_map": {
        "model.embed_tokens.weight": first.name, "lm_head.weight": second.name}})
    # A stray file not in the index is ignored.
    save(tmp_path, "extra.safetensors", {"x": np.zeros(3, np.float32)})
    folder = read_model_folder(tmp_path)
    assert folder.config == CONFIG
    assert folder.tensors is not None
    assert folder.tensors.names() == {"model.embed_tokens.weight", "lm_head.weight"}
    assert folder.tensors.total_bytes == data_bytes(first, second) == 10 * 4 * 6


def test_all_safetensors_without_index_and_consolidated_skipped(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", CONFIG)
    a = save(tmp_path, "a.safetensors", {"x": np.zeros(4, np.float32)})
    b = save(tmp_path, "b.safetensors", {"y": np.zeros(4, np.float32)})
    save(tmp_path, "consolidated.safetensors", {"x2": np.zeros(4, np.float32)})
    result = inspect_path(tmp_path)
    assert result.params == 8 and result.weights_bytes == data_bytes(a, b)


def test_duplicate_tensor_across_shards(tmp_path: Path) -> None:
    save(tmp_path, "a.safetensors", {"x": np.zeros(4, np.float32)})
    save(tmp_path, "b.safetensors", {"x": np.zeros(4, np.float32)})
    with pytest.raises(InputError, match="exactly one shard"):
        read_model_folder(tmp_path)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "a/../../b",
                                   "C:\\x.safetensors", "", 5, None, "c:x"])
def test_index_cannot_escape_the_folder(tmp_path: Path, shard: Any) -> None:
    write_json(tmp_path / "config.json", CONFIG)
    save(tmp_path.parent, "outside.safetensors", {"x": np.zeros(1, np.float32)})
    write_json(tmp_path / "model.safetensors.index.json", {"weight_map": {"x": shard}})
    with pytest.raises(InputError, match="shard"):
        read_model_folder(tmp_path)


@pytest.mark.parametrize("index", [[], {"weight_map": []}, {"weight_map": None}, {}])
def test_index_without_weight_map(tmp_path: Path, index: Any) -> None:
    write_json(tmp_path / "model.safetensors.index.json", index)
    with pytest.raises(InputError, match=r"weight_map|not an object"):
        read_model_folder(tmp_path)


def test_missing_shard(tmp_path: Path) -> None:
    write_json(tmp_path / "model.safetensors.index.json",
               {"weight_map": {"x": "model-00001-of-00002.safetensors"}})
    with pytest.raises(InputError, match="missing the shard"):
        read_model_folder(tmp_path)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "consolidated.00.pth"])
def test_pickles_are_never_loaded(tmp_path: Path, name: str) -> None:
    write_json(tmp_path / "config.json", CONFIG)
    (tmp_path / name).write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(InputError, match="only safetensors and GGUF"):
        read_model_folder(tmp_path)
    with pytest.raises(InputError, match="never loads"):
        read_model_folder(tmp_path / name)


def test_config_only_folder_and_file(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", CONFIG)
    folder = read_model_folder(tmp_path)
    assert folder.tensors is None and folder.config == CONFIG
    result = inspect_path(tmp_path)
    assert result.kind == "config-only"
    assert result.params is None and result.weights_bytes is None
    assert result.to_json()["shape"] == CONFIG
    assert inspect_path(tmp_path / "config.json").kind == "config-only"


@pytest.mark.parametrize(
    "content,fragment",
    [
        (b"[1, 2]", "not an object"),
        (b"{", "not valid"),
        (b"\xff", "not valid"),
        (b"[" * 200_000, "not valid"),
        (b'{"a": 1' + b" " * (16 * 1024 * 1024) + b"}", "16 MiB"),
    ],
)
def test_bad_config(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(InputError, match=fragment):
        read_model_folder(tmp_path)


def test_empty_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"neither config\.json nor weights"):
        read_model_folder(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        read_model_folder(tmp_path / "nope")
    with pytest.raises(InputError, match="does not exist"):
        inspect_path(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="not a file vramest reads"):
        read_model_folder(tmp_path / "notes.txt")


def test_legacy_quantize_config(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", CONFIG)
    write_json(tmp_path / "quantize_config.json", {"bits": 4, "group_size": 128})
    assert read_model_folder(tmp_path).quantization_config == {
        "bits": 4, "group_size": 128, "quant_method": "gptq"}


# --- quantized checkpoints ------------------------------------------------------------------

IN, OUT = 64, 128


def test_gptq_counts_logical_int4_weights(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {**CONFIG, "quantization_config": {
        "quant_method": "gptq", "bits": 4, "group_size": 32}})
    prefix = "model.layers.0.mlp.down_proj"
    shard = save(tmp_path, "model.safetensors", {
        f"{prefix}.qweight": np.zeros((IN // 8, OUT), np.int32),
        f"{prefix}.qzeros": np.zeros((IN // 32, OUT // 8), np.int32),
        f"{prefix}.scales": np.zeros((IN // 32, OUT), np.float16),
        f"{prefix}.g_idx": np.zeros((IN,), np.int32),
        f"{prefix}.bias": np.zeros((OUT,), np.float16),
        "model.embed_tokens.weight": np.zeros((10, IN), np.float16),
    })
    result = inspect_path(tmp_path)
    assert result.params == IN * OUT + OUT + 10 * IN
    assert result.params_by_dtype == {"gptq-int4": IN * OUT, "F16": OUT + 10 * IN}
    quant_bytes = IN * OUT // 2 + (IN // 32) * (OUT // 8) * 4 + (IN // 32) * OUT * 2 + IN * 4
    assert result.bytes_by_dtype["gptq-int4"] == quant_bytes
    assert result.weights_bytes == data_bytes(shard) == quant_bytes + (OUT + 10 * IN) * 2
    assert result.params_by_component == {"mlp": IN * OUT + OUT, "embeddings": 10 * IN}
    assert result.quantization is not None and result.quantization["bits"] == 4


def test_awq_label(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {**CONFIG, "quantization_config": {
        "quant_method": "awq", "bits": 4}})
    save(tmp_path, "model.safetensors", {
        "l.qweight": np.zeros((IN, OUT // 8), np.int32),
        "l.qzeros": np.zeros((1, OUT // 8), np.int32),
        "l.scales": np.zeros((1, OUT), np.float16),
    })
    assert inspect_path(tmp_path).params_by_dtype == {"awq-int4": IN * OUT}


def test_bitsandbytes_4bit(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {**CONFIG, "quantization_config": {
        "quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}})
    weight = "model.layers.0.self_attn.q_proj.weight"
    shard = save(tmp_path, "model.safetensors", {
        weight: np.zeros((IN * OUT // 2, 1), np.uint8),
        f"{weight}.absmax": np.zeros((IN * OUT // 64,), np.float32),
        f"{weight}.quant_map": np.zeros((16,), np.float32),
        f"{weight}.quant_state.bitsandbytes__nf4": np.zeros((90,), np.uint8),
        "model.norm.weight": np.zeros((IN,), np.float16),
    })
    result = inspect_path(tmp_path)
    assert result.params == IN * OUT + IN
    assert result.params_by_dtype == {"bnb-nf4": IN * OUT, "F16": IN}
    assert result.bytes_by_dtype["bnb-nf4"] == IN * OUT // 2 + IN * OUT // 64 * 4 + 64 + 90
    assert result.weights_bytes == data_bytes(shard)
    assert result.params_by_component == {"attention": IN * OUT, "norms": IN}


def test_bitsandbytes_8bit(tmp_path: Path) -> None:
    save(tmp_path, "model.safetensors", {
        "l.weight": np.zeros((OUT, IN), np.int8),
        "l.SCB": np.zeros((OUT,), np.float32),
    })
    result = inspect_path(tmp_path)
    assert result.params_by_dtype == {"bnb-int8": IN * OUT}
    assert result.bytes_by_dtype == {"bnb-int8": IN * OUT + OUT * 4}


def test_gpt_oss_mxfp4_blocks(tmp_path: Path) -> None:
    prefix = "model.layers.0.mlp.experts.down_proj"
    save(tmp_path, "model.safetensors", {
        f"{prefix}_blocks": np.zeros((4, OUT, IN // 32, 16), np.uint8),
        f"{prefix}_scales": np.zeros((4, OUT, IN // 32), np.uint8),
        f"{prefix}_bias": np.zeros((4, OUT), np.float32),
    })
    result = inspect_path(tmp_path)
    assert result.params_by_dtype == {"mxfp4": 4 * OUT * IN, "F32": 4 * OUT}
    assert result.params_by_component == {"experts": 4 * OUT * IN + 4 * OUT}


def test_fp8_scales_add_bytes_not_params(tmp_path: Path) -> None:
    save(tmp_path, "model.safetensors", {
        "l.weight": np.zeros((OUT, IN), np.uint8),
        "l.weight_scale_inv": np.zeros((1, 1), np.float32),
    })
    result = inspect_path(tmp_path)
    assert result.params == IN * OUT
    assert result.bytes_by_dtype == {"U8": IN * OUT + 4}


# --- fuzzing the index ----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["weight_map", "metadata", "x"]),
                       JSON_VALUES | st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
                       max_size=3))
def test_fuzzed_index_only_raises_input_error(tmp_path: Path, index: dict) -> None:
    folder = tmp_path / "fuzz"
    folder.mkdir(exist_ok=True)
    write_json(folder / "model.safetensors.index.json", index)
    with contextlib.suppress(InputError):
        read_model_folder(folder)
