"""Safetensors headers: real checkpoints from transformers, hostile headers, fuzzing."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramest.errors import InputError
from vramest.readers.folder import read_model_folder
from vramest.readers.inspect import inspect_path
from vramest.readers.safetensors_header import SAFETENSORS_DTYPE_BITS, read_safetensors_header
from vramest.readers.tensors import TensorInfo, TensorSet, component_of

FUZZ = settings(max_examples=200, deadline=2000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def safetensors_bytes(header: Any, data: bytes = b"", *, raw_header: bytes | None = None) -> bytes:
    encoded = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def write(tmp_path: Path, data: bytes, name: str = "x.safetensors") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def header_length(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


# --- hand-built files -----------------------------------------------------------------------


def test_reads_dtypes_shapes_and_metadata(tmp_path: Path) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
        "b": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [12, 16]},
        "c": {"dtype": "F4", "shape": [2, 2], "data_offsets": [16, 18]},
        "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [18, 18]},
        "scalar": {"dtype": "I64", "shape": [], "data_offsets": [18, 26]},
    }
    parsed = read_safetensors_header(write(tmp_path, safetensors_bytes(header, b"\0" * 26)))
    assert parsed.metadata == {"format": "pt"}
    by_name = {t.name: t for t in parsed.tensors}
    assert by_name["a"] == TensorInfo("a", "BF16", (2, 3), 12)
    assert by_name["c"].nbytes == 2 and by_name["c"].numel == 4
    assert by_name["empty"].numel == 0
    assert by_name["scalar"].numel == 1
    assert parsed.total_bytes == 26
    assert parsed.total_params == 6 + 4 + 4 + 0 + 1
    assert parsed.params_by_dtype()["BF16"] == 6
    assert parsed.bytes_by_dtype()["I64"] == 8


def test_dtype_sizes_match_the_safetensors_package() -> None:
    np = pytest.importorskip("numpy")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    for name, numpy_type in safetensors_numpy._TYPES.items():  # type: ignore[attr-defined]
        if name in SAFETENSORS_DTYPE_BITS:
            assert SAFETENSORS_DTYPE_BITS[name] == np.dtype(numpy_type).itemsize * 8, name


GOOD = {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}


@pytest.mark.parametrize(
    "entry,fragment",
    [
        ({"dtype": "F17", "shape": [2], "data_offsets": [0, 4]}, "dtype"),
        ({"dtype": 5, "shape": [2], "data_offsets": [0, 4]}, "dtype"),
        ({"dtype": "F16", "shape": [-2], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F16", "shape": [2.0], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F16", "shape": [True, 2], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F16", "shape": "2", "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F16", "shape": [2], "data_offsets": [4, 0]}, "data_offsets"),
        ({"dtype": "F16", "shape": [2], "data_offsets": [0]}, "data_offsets"),
        ({"dtype": "F16", "shape": [2], "data_offsets": ["0", "4"]}, "data_offsets"),
        ({"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}, "match its dtype"),
        ({"dtype": "F16", "shape": [2], "data_offsets": [0, 2**70]}, "within the file"),
        ({"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}, "whole bytes"),
        ({"dtype": "F16", "shape": [2**40] * 60, "data_offsets": [0, 4]}, "match its dtype"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_entries(tmp_path: Path, entry: Any, fragment: str) -> None:
    path = write(tmp_path, safetensors_bytes({"t": entry}, b"\0" * 4))
    with pytest.raises(InputError, match=fragment) as caught:
        read_safetensors_header(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "too short"),
        (b"\1\2\3", "too short"),
        (struct.pack("<Q", 2**63), "100 MiB"),
        (struct.pack("<Q", 1000) + b"{}", "truncated"),
        (safetensors_bytes(None, raw_header=b"\xff\xfe"), "UTF-8 JSON"),
        (safetensors_bytes(None, raw_header=b"[" * 100_000), "UTF-8 JSON"),
        (safetensors_bytes([1, 2]), "not a JSON object"),
        (safetensors_bytes({"__metadata__": {"a": 1}}), "__metadata__"),
        (safetensors_bytes({"__metadata__": []}), "__metadata__"),
    ],
)
def test_bad_files(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(InputError, match=fragment):
        read_safetensors_header(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        read_safetensors_header(tmp_path / "absent.safetensors")
    with pytest.raises(InputError, match="cannot be read"):
        read_safetensors_header(tmp_path)


def test_header_only_copy_with_declared_size(tmp_path: Path) -> None:
    header = {"t": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    data = safetensors_bytes(header)
    path = write(tmp_path, data, "t.safetensors.header")
    with pytest.raises(InputError, match="within the file"):
        read_safetensors_header(path)
    parsed = read_safetensors_header(path, file_size=len(data) + 4000)
    assert parsed.total_bytes == 4000


# --- component names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,component",
    [
        ("model.embed_tokens.weight", "embeddings"),
        ("lm_head.weight", "lm_head"),
        ("model.norm.weight", "norms"),
        ("model.layers.3.input_layernorm.weight", "norms"),
        ("model.layers.3.self_attn.q_proj.weight", "attention"),
        ("model.layers.3.self_attn.q_norm.weight", "norms"),
        ("model.layers.3.self_attn.kv_a_proj_with_mqa.weight", "attention"),
        ("model.layers.3.mlp.gate_proj.weight", "mlp"),
        ("model.layers.3.mlp.gate.weight", "router"),
        ("model.layers.3.mlp.gate.e_score_correction_bias", "router"),
        ("model.layers.3.mlp.experts.17.down_proj.weight", "experts"),
        ("model.layers.3.mlp.experts.gate_up_proj_blocks", "experts"),
        ("model.layers.3.mlp.router.weight", "router"),
        ("model.layers.3.mlp.shared_expert.up_proj.weight", "mlp"),
        ("model.layers.3.mlp.shared_experts.up_proj.weight", "mlp"),
        ("model.layers.3.mlp.shared_expert_gate.weight", "router"),
        ("model.layers.3.block_sparse_moe.gate.weight", "router"),
        ("model.layers.3.block_sparse_moe.experts.2.w1.weight", "experts"),
        ("transformer.wte.weight", "embeddings"),
        ("transformer.wpe.weight", "embeddings"),
        ("transformer.h.0.attn.c_attn.weight", "attention"),
        ("transformer.h.0.attn.c_proj.bias", "attention"),
        ("transformer.h.0.mlp.c_fc.weight", "mlp"),
        ("transformer.h.0.ln_1.weight", "norms"),
        ("transformer.ln_f.weight", "norms"),
        ("gpt_neox.embed_in.weight", "embeddings"),
        ("gpt_neox.layers.0.attention.query_key_value.weight", "attention"),
        ("gpt_neox.layers.0.attention.dense.weight", "attention"),
        ("gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "mlp"),
        ("gpt_neox.layers.0.post_attention_layernorm.weight", "norms"),
        ("embed_out.weight", "lm_head"),
        ("transformer.h.0.self_attention.query_key_value.weight", "attention"),
        ("token_embd.weight", "embeddings"),
        ("output.weight", "lm_head"),
        ("output_norm.weight", "norms"),
        ("blk.0.attn_q.weight", "attention"),
        ("blk.0.attn_qkv.weight", "attention"),
        ("blk.0.attn_output.weight", "attention"),
        ("blk.0.attn_norm.weight", "norms"),
        ("blk.0.ffn_norm.weight", "norms"),
        ("blk.0.ffn_gate.weight", "mlp"),
        ("blk.0.ffn_down.weight", "mlp"),
        ("blk.0.ffn_gate_exps.weight", "experts"),
        ("blk.0.ffn_up_exps.weight", "experts"),
        ("blk.0.ffn_gate_inp.weight", "router"),
        ("blk.0.ffn_up_shexp.weight", "mlp"),
        ("rope_freqs.weight", "other"),
        ("model.vision_tower.blocks.0.attn.qkv.weight", "other"),
    ],
)
def test_component_of(name: str, component: str) -> None:
    assert component_of(name) == component


def test_params_by_component() -> None:
    tensors = TensorSet((
        TensorInfo("model.embed_tokens.weight", "F16", (10, 4), 80),
        TensorInfo("model.layers.0.self_attn.q_proj.weight", "F16", (4, 4), 32),
        TensorInfo("model.layers.0.mlp.up_proj.weight", "F16", (8, 4), 64),
    ))
    assert tensors.params_by_component() == {"embeddings": 40, "attention": 16, "mlp": 32}


# --- fuzzing --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    np = pytest.importorskip("numpy")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path_factory.mktemp("st") / "small.safetensors"
    safetensors_numpy.save_file(
        {"w": np.ones((3, 4), np.float16), "b": np.arange(5, dtype=np.int64)},
        str(path), metadata={"format": "np"},
    )
    return path.read_bytes()


def test_every_truncation_is_an_input_error(small_file_bytes: bytes, tmp_path: Path) -> None:
    full = read_safetensors_header(write(tmp_path, small_file_bytes, "full.safetensors"))
    assert full.total_bytes == 3 * 4 * 2 + 5 * 8
    path = tmp_path / "cut.safetensors"
    for cut in range(len(small_file_bytes)):
        path.write_bytes(small_file_bytes[:cut])
        with pytest.raises(InputError):
            read_safetensors_header(path)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, junk: bytes) -> None:
    with contextlib.suppress(InputError):
        read_safetensors_header(write(tmp_path, junk))


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 2**64 - 1))
def test_random_header_with_any_declared_length(tmp_path: Path, junk: bytes, length: int) -> None:
    with contextlib.suppress(InputError):
        read_safetensors_header(write(tmp_path, struct.pack("<Q", length) + junk))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from([*SAFETENSORS_DTYPE_BITS, "X"]) | JSON_VALUES,
    "shape": st.lists(st.integers(-2, 2**66), max_size=5) | JSON_VALUES,
    "data_offsets": st.lists(st.integers(-2, 2**66), max_size=3) | JSON_VALUES,
})


@FUZZ
@given(st.dictionaries(st.text(max_size=10), ENTRY | JSON_VALUES, max_size=4),
       st.integers(0, 64))
def test_wrong_json_types(tmp_path: Path, header: dict, data_size: int) -> None:
    try:
        raw = json.dumps(header, allow_nan=True).encode()
    except (ValueError, OverflowError):
        return
    with contextlib.suppress(InputError):
        parsed = read_safetensors_header(write(tmp_path, safetensors_bytes(None, b"\0" * data_size,
                                                                           raw_header=raw)))
        assert parsed.total_bytes <= data_size


# --- real checkpoints written by transformers (slow) ----------------------------------------


def _llama(tie: bool):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, tie_word_embeddings=tie,
    )
    return transformers.AutoModelForCausalLM.from_config(config)


def _data_bytes(files: list[Path]) -> int:
    return sum(path.stat().st_size - header_length(path) for path in files)


@pytest.mark.slow
@pytest.mark.parametrize("tie", [False, True])
def test_single_file_checkpoint(tmp_path: Path, tie: bool) -> None:
    model = _llama(tie)
    model.save_pretrained(tmp_path, safe_serialization=True)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert [p.name for p in files] == ["model.safetensors"]
    expected_params = sum(p.numel() for p in model.parameters())

    result = inspect_path(tmp_path)
    assert result.kind == "safetensors-folder"
    assert result.params == expected_params
    assert result.weights_bytes == _data_bytes(files)
    assert result.params_by_dtype == {"F32": expected_params}
    assert result.config["hidden_size"] == 64
    assert result.config["model_type"] == "llama"
    assert result.quantization is None
    embed = 256 * 64
    assert result.params_by_component["embeddings"] == embed
    assert result.params_by_component.get("lm_head", 0) == (0 if tie else embed)
    assert result.params_by_component["norms"] == 64 * (2 * 2 + 1)
    assert result.params_by_component["attention"] == 2 * (64 * 64 * 2 + 64 * 32 * 2)
    assert result.params_by_component["mlp"] == 2 * 3 * 64 * 128

    single = inspect_path(files[0])
    assert single.kind == "safetensors-file"
    assert (single.params, single.weights_bytes) == (result.params, result.weights_bytes)
    config_only = inspect_path(tmp_path / "config.json")
    assert config_only.kind == "config-only" and config_only.weights_bytes is None


@pytest.mark.slow
def test_sharded_checkpoint_with_index(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = _llama(False).to(torch.bfloat16)
    model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="40KB")
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) > 2
    assert (tmp_path / "model.safetensors.index.json").is_file()
    expected_params = sum(p.numel() for p in model.parameters())

    folder = read_model_folder(tmp_path)
    assert folder.tensors is not None
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert folder.tensors.names() == set(index["weight_map"])
    result = inspect_path(tmp_path)
    assert result.params == expected_params
    assert result.weights_bytes == _data_bytes(files) == 2 * expected_params
    assert result.params_by_dtype == {"BF16": expected_params}
    assert result.bytes_by_dtype == {"BF16": 2 * expected_params}
    assert result.to_json()["params"] == expected_params
