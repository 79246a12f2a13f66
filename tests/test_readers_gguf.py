"""GGUF reader: real files from the gguf package's writer, hand-built hostile headers, fuzzing."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramest.errors import InputError
from vramest.readers.gguf import GGML_TYPE_BLOCKS, gguf_to_hf_config, read_gguf
from vramest.readers.inspect import inspect_path

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

Q = gguf.GGMLQuantizationType
VOCAB, EMBED, FFN, LAYERS = 64, 256, 512, 2


def _random(shape: tuple[int, ...], seed: int = 0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def write_llama_gguf(path: Path, *, tokens: int = 40, with_output: bool = True,
                     arch: str = "llama") -> Path:
    """A tiny llama-shaped GGUF with F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K tensors."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(LAYERS)
    writer.add_context_length(4096)
    writer.add_embedding_length(EMBED)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(8)
    writer.add_key_value(f"{arch}.attention.head_count_kv", [2, 4], gguf.GGUFValueType.ARRAY)
    writer.add_rope_dimension_count(32)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_string("general.name", "tiny ünïcode model")
    writer.add_bool("test.flag", True)
    writer.add_int64("test.int64", -(2**40))
    writer.add_float64("test.float64", 2.5)
    writer.add_uint8("test.uint8", 200)
    writer.add_int16("test.int16", -300)
    writer.add_array("test.floats", [0.5, 1.5, 2.5])
    writer.add_token_list([f"tok{i}" for i in range(tokens)])
    writer.add_token_scores([float(i) for i in range(tokens)])

    writer.add_tensor("token_embd.weight", gguf.quants.quantize(_random((VOCAB, EMBED)), Q.Q8_0),
                      raw_dtype=Q.Q8_0)
    writer.add_tensor("output_norm.weight", _random((EMBED,)))
    if with_output:
        writer.add_tensor("output.weight", _random((VOCAB, EMBED)).astype(np.float16))
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", _random((EMBED,)))
        writer.add_tensor(f"{prefix}.attn_q.weight",
                          gguf.quants.quantize(_random((EMBED, EMBED), layer), Q.Q4_0),
                          raw_dtype=Q.Q4_0)
        writer.add_tensor(f"{prefix}.attn_k.weight",
                          gguf.quants.quantize(_random((64, EMBED), layer), Q.BF16),
                          raw_dtype=Q.BF16)
        # Raw bytes of the right block size: Q4_K is 144 bytes per 256 weights.
        raw = np.random.default_rng(layer).integers(0, 255, (FFN, EMBED // 256 * 144), np.uint8)
        writer.add_tensor(f"{prefix}.ffn_up.weight", raw, raw_dtype=Q.Q4_K)
        raw6 = np.zeros((EMBED, FFN // 256 * 210), np.uint8)
        writer.add_tensor(f"{prefix}.ffn_down.weight", raw6, raw_dtype=Q.Q6_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def llama_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def big_vocab_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "vocab.gguf", tokens=3000,
                            with_output=False)


def test_tensors_match_the_gguf_package_reader(llama_gguf: Path) -> None:
    ours = read_gguf(llama_gguf)
    theirs = gguf.GGUFReader(str(llama_gguf))
    assert ours.version == 3
    assert ours.alignment == 32
    assert ours.data_offset == theirs.data_offset
    by_name = {t.name: t for t in ours.tensors.tensors}
    assert set(by_name) == {t.name for t in theirs.tensors}
    for tensor in theirs.tensors:
        mine = by_name[tensor.name]
        assert mine.dtype == tensor.tensor_type.name
        assert mine.nbytes == int(tensor.n_bytes)
        assert mine.shape == tuple(int(d) for d in reversed(tensor.shape.tolist()))
        assert mine.numel == int(tensor.n_elements)
    # The data section ends exactly where the last tensor's bytes end (plus padding).
    last = max(theirs.tensors, key=lambda t: t.data_offset)
    assert last.data_offset + last.n_bytes <= llama_gguf.stat().st_size


def test_block_sizes_agree_with_the_gguf_package() -> None:
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        # gguf-py still lists Q8_1 with float scales (40 bytes); ggml's block_q8_1 holds two
        # halves and 32 int8 (36 bytes). Q8_1 is a compute-only type that files never store.
        if qtype.name in GGML_TYPE_BLOCKS and qtype.name != "Q8_1":
            assert GGML_TYPE_BLOCKS[qtype.name] == (block, size), qtype.name


def test_quantized_byte_counts(llama_gguf: Path) -> None:
    tensors = {t.name: t for t in read_gguf(llama_gguf).tensors.tensors}
    assert tensors["blk.0.ffn_up.weight"].nbytes == FFN * EMBED // 256 * 144
    assert tensors["blk.0.ffn_up.weight"].dtype == "Q4_K"
    assert tensors["blk.0.ffn_down.weight"].nbytes == EMBED * FFN // 256 * 210
    assert tensors["token_embd.weight"].nbytes == VOCAB * EMBED // 32 * 34
    assert tensors["blk.0.attn_q.weight"].nbytes == EMBED * EMBED // 32 * 18
    assert tensors["blk.0.attn_k.weight"].dtype == "BF16"
    assert tensors["blk.0.attn_k.weight"].shape == (64, EMBED)


def test_metadata_values(llama_gguf: Path) -> None:
    meta = read_gguf(llama_gguf).metadata
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "tiny ünïcode model"
    assert meta["test.flag"] is True
    assert meta["test.int64"] == -(2**40)
    assert meta["test.float64"] == 2.5
    assert meta["test.uint8"] == 200
    assert meta["test.int16"] == -300
    assert meta["test.floats"] == [0.5, 1.5, 2.5]
    assert meta["llama.attention.head_count_kv"] == [2, 4]
    assert meta["tokenizer.ggml.tokens"][:2] == ["tok0", "tok1"]
    assert read_gguf(llama_gguf).file_type == "MOSTLY_Q4_K_M"


def test_large_arrays_are_summarised_and_skipped_correctly(big_vocab_gguf: Path) -> None:
    parsed = read_gguf(big_vocab_gguf)
    tokens = parsed.metadata["tokenizer.ggml.tokens"]
    assert tokens["type"] == "STRING" and tokens["length"] == 3000
    assert tokens["head"][:3] == ["tok0", "tok1", "tok2"]
    scores = parsed.metadata["tokenizer.ggml.scores"]
    assert scores["type"] == "FLOAT32" and scores["length"] == 3000
    # Tensors after the skipped arrays are still found at the right place.
    assert parsed.data_offset == gguf.GGUFReader(str(big_vocab_gguf)).data_offset


def test_hf_config(llama_gguf: Path, big_vocab_gguf: Path) -> None:
    config = gguf_to_hf_config(read_gguf(llama_gguf))
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == EMBED
    assert config["num_hidden_layers"] == LAYERS
    assert config["intermediate_size"] == FFN
    assert config["num_attention_heads"] == 8
    assert config["num_key_value_heads"] == 4
    assert config["num_key_value_heads_per_layer"] == [2, 4]
    assert config["head_dim"] == EMBED // 8
    assert config["max_position_embeddings"] == 4096
    assert config["vocab_size"] == VOCAB
    assert config["rope_theta"] == 500000.0
    assert config["tie_word_embeddings"] is False
    assert gguf_to_hf_config(read_gguf(big_vocab_gguf))["tie_word_embeddings"] is True


def test_inspect_counts_logical_params(llama_gguf: Path) -> None:
    result = inspect_path(llama_gguf)
    assert result.kind == "gguf"
    per_layer = EMBED + EMBED * EMBED + 64 * EMBED + FFN * EMBED + EMBED * FFN
    assert result.params == VOCAB * EMBED * 2 + EMBED + LAYERS * per_layer
    assert result.weights_bytes == read_gguf(llama_gguf).tensors.total_bytes
    assert result.params_by_dtype["Q4_K"] == LAYERS * FFN * EMBED
    assert result.bytes_by_dtype["Q6_K"] == LAYERS * EMBED * FFN // 256 * 210
    assert result.params_by_component["embeddings"] == VOCAB * EMBED
    assert result.params_by_component["lm_head"] == VOCAB * EMBED
    assert result.params_by_component["mlp"] == LAYERS * 2 * FFN * EMBED
    assert result.params_by_component["norms"] == EMBED * (1 + LAYERS)
    assert result.quantization == {"quant_method": "gguf", "file_type": "MOSTLY_Q4_K_M",
                                   "version": 3}
    as_json = result.to_json()
    assert as_json["params"] == result.params and as_json["shape"]["hidden_size"] == EMBED
    # A folder holding just the GGUF file is read the same way.
    assert inspect_path(llama_gguf.parent).params == result.params


def test_version_2_is_read(llama_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(llama_gguf.read_bytes())
    data[4:8] = struct.pack("<I", 2)
    path = tmp_path / "v2.gguf"
    path.write_bytes(bytes(data))
    assert read_gguf(path).version == 2


@pytest.mark.parametrize("version,fragment", [(1, "version 1"), (4, "version 4")])
def test_unsupported_versions(llama_gguf: Path, tmp_path: Path, version: int,
                              fragment: str) -> None:
    data = bytearray(llama_gguf.read_bytes())
    data[4:8] = struct.pack("<I", version)
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=fragment):
        read_gguf(path)


def test_big_endian_is_named(llama_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(llama_gguf.read_bytes())
    data[4:8] = struct.pack(">I", 3)
    path = tmp_path / "be.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="big-endian"):
        read_gguf(path)


# --- hand-built headers ---------------------------------------------------------------------


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _kv(key: bytes, value_type: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", value_type) + payload


def _tensor_info(name: bytes, dims: list[int], ggml_type: int, offset: int) -> bytes:
    return (_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<II", ggml_type, 0)[:4] + struct.pack("<Q", offset))


def build_gguf(kvs: list[bytes], infos: list[bytes], *, tensor_count: int | None = None,
               kv_count: int | None = None, data: bytes = b"", version: int = 3) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", version,
                                 len(infos) if tensor_count is None else tensor_count,
                                 len(kvs) if kv_count is None else kv_count)
    body = head + b"".join(kvs) + b"".join(infos)
    body += b"\0" * ((-len(body)) % 32)
    return body + data


def _write(tmp_path: Path, data: bytes, name: str = "x.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


ARCH_KV = _kv(b"general.architecture", 8, _string(b"llama"))


def test_hand_built_file_is_read(tmp_path: Path) -> None:
    info = _tensor_info(b"blk.0.ffn_up.weight", [256, 2], 12, 0)
    path = _write(tmp_path, build_gguf([ARCH_KV], [info], data=b"\1" * 288))
    parsed = read_gguf(path)
    assert parsed.tensors.tensors[0].nbytes == 288
    assert parsed.tensors.tensors[0].shape == (2, 256)


def test_nested_arrays(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", 4, 2) + struct.pack("<II", 7, 9)
    outer = struct.pack("<IQ", 9, 2) + inner + inner
    path = _write(tmp_path, build_gguf([_kv(b"nested", 9, outer)], []))
    assert read_gguf(path).metadata["nested"] == [[7, 9], [7, 9]]


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "GGUF magic"),
        (b"GGML" + b"\0" * 40, "GGUF magic"),
        (build_gguf([], [], kv_count=2**63), "metadata entries"),
        (build_gguf([], [], tensor_count=2**40), "tensors"),
        (build_gguf([_kv(b"k", 8, struct.pack("<Q", 2**62))], []), "1 MiB"),
        (build_gguf([_string(b"k" * 10) + struct.pack("<I", 13)], []), "unknown type 13"),
        (build_gguf([_kv(b"k", 9, struct.pack("<IQ", 8, 2**60))], []), "more than the file"),
        (build_gguf([_kv(b"k", 9, struct.pack("<IQ", 77, 1))], []), "unknown item type"),
        (build_gguf([ARCH_KV], [_tensor_info(b"t", [1] * 9, 0, 0)]), "dimensions"),
        (build_gguf([ARCH_KV], [_tensor_info(b"t", [4], 99, 0)]), "unknown ggml type"),
        (build_gguf([ARCH_KV], [_tensor_info(b"t", [100], 12, 0)]), "multiple"),
        (build_gguf([ARCH_KV], [_tensor_info(b"t", [2**32, 2**32], 0, 0)]), "past the end"),
        (build_gguf([ARCH_KV], [_tensor_info(b"t", [4], 0, 3)], data=b"\0" * 64), "aligned"),
        (build_gguf([_kv(b"general.alignment", 4, struct.pack("<I", 3))], []), "power of two"),
        (build_gguf([ARCH_KV], [_tensor_info(b"t", [4], 0, 0)] * 2, data=b"\0" * 64), "twice"),
    ],
)
def test_hostile_headers(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match=fragment) as caught:
        read_gguf(path)
    message = str(caught.value)
    assert str(path) in message and message.endswith(".")


def test_deeply_nested_arrays_are_refused(tmp_path: Path) -> None:
    payload = struct.pack("<IQ", 9, 1) * 50 + struct.pack("<IQ", 4, 0)
    path = _write(tmp_path, build_gguf([_kv(b"deep", 9, payload)], []))
    with pytest.raises(InputError, match="nests"):
        read_gguf(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        read_gguf(tmp_path / "absent.gguf")


def test_config_needs_architecture(tmp_path: Path) -> None:
    path = _write(tmp_path, build_gguf([], []))
    with pytest.raises(InputError, match=r"general\.architecture"):
        gguf_to_hf_config(read_gguf(path))


# --- fuzzing --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("small") / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_array("test.ints", [1, 2, 3])
    writer.add_token_list(["a", "bc"])
    writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(_random((2, 64)), Q.Q8_0),
                      raw_dtype=Q.Q8_0)
    writer.add_tensor("output_norm.weight", _random((8,)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_every_truncation_is_an_input_error_or_complete(small_gguf_bytes: bytes,
                                                        tmp_path: Path) -> None:
    full_path = _write(tmp_path, small_gguf_bytes, "full.gguf")
    full = read_gguf(full_path)
    data_end = max(int(t.data_offset + t.n_bytes) for t in gguf.GGUFReader(str(full_path)).tensors)
    path = tmp_path / "cut.gguf"
    for cut in range(len(small_gguf_bytes)):
        path.write_bytes(small_gguf_bytes[:cut])
        try:
            parsed = read_gguf(path)
        except InputError:
            continue
        # Only cuts in the trailing padding after the last tensor's data can still be complete.
        assert cut >= data_end
        assert parsed.tensors == full.tensors


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_random_bytes_after_the_magic(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + junk)
    with contextlib.suppress(InputError):
        read_gguf(path)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_real_file(tmp_path: Path, small_gguf_bytes: bytes, data: st.DataObject) -> None:
    mutated = bytearray(small_gguf_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    path = tmp_path / "mutated.gguf"
    path.write_bytes(bytes(mutated))
    with contextlib.suppress(InputError):
        gguf_to_hf_config(read_gguf(path))


def _u32(key: str, value: int) -> bytes:
    return _kv(key.encode(), 4, struct.pack("<I", value))


def test_hf_config_for_mla_moe(tmp_path: Path) -> None:
    kvs = [
        _kv(b"general.architecture", 8, _string(b"deepseek2")),
        _u32("deepseek2.block_count", 3), _u32("deepseek2.embedding_length", 512),
        _u32("deepseek2.attention.head_count", 16), _u32("deepseek2.attention.head_count_kv", 1),
        _u32("deepseek2.attention.key_length", 576), _u32("deepseek2.attention.value_length", 512),
        _u32("deepseek2.attention.key_length_mla", 192),
        _u32("deepseek2.attention.value_length_mla", 128),
        _u32("deepseek2.attention.kv_lora_rank", 512), _u32("deepseek2.attention.q_lora_rank", 96),
        _u32("deepseek2.rope.dimension_count", 64), _u32("deepseek2.expert_count", 64),
        _u32("deepseek2.expert_used_count", 6), _u32("deepseek2.expert_shared_count", 2),
        _u32("deepseek2.expert_feed_forward_length", 1408),
        _u32("deepseek2.leading_dense_block_count", 1),
        _kv(b"tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + _string(b"a") * 3),
    ]
    config = gguf_to_hf_config(read_gguf(_write(tmp_path, build_gguf(kvs, []))))
    assert config["model_type"] == "deepseek_v3"
    assert config["kv_lora_rank"] == 512 and config["q_lora_rank"] == 96
    assert config["qk_rope_head_dim"] == 64 and config["qk_nope_head_dim"] == 128
    assert config["v_head_dim"] == 128
    assert config["num_local_experts"] == config["n_routed_experts"] == 64
    assert config["num_experts_per_tok"] == 6 and config["moe_intermediate_size"] == 1408
    assert config["n_shared_experts"] == 2 and config["first_k_dense_replace"] == 1
    assert config["vocab_size"] == 3
    assert config["tie_word_embeddings"] is True


def test_hf_config_mixtral_and_arch_names(tmp_path: Path) -> None:
    kvs = [_kv(b"general.architecture", 8, _string(b"llama")), _u32("llama.expert_count", 8),
           _u32("llama.attention.sliding_window", 4096)]
    config = gguf_to_hf_config(read_gguf(_write(tmp_path, build_gguf(kvs, []))))
    assert config["model_type"] == "mixtral" and config["num_local_experts"] == 8
    assert config["sliding_window"] == 4096
    for arch, model_type in [("gptneox", "gpt_neox"), ("gpt-oss", "gpt_oss"),
                             ("qwen3moe", "qwen3_moe"), ("some-new-arch", "some_new_arch")]:
        kvs = [_kv(b"general.architecture", 8, _string(arch.encode()))]
        path = _write(tmp_path, build_gguf(kvs, []), f"{arch}.gguf")
        assert gguf_to_hf_config(read_gguf(path))["model_type"] == model_type


@settings(max_examples=200, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_inside_skipped_arrays(tmp_path: Path, big_vocab_gguf: Path,
                                         data: st.DataObject) -> None:
    full = big_vocab_gguf.read_bytes()
    data_offset = read_gguf(big_vocab_gguf).data_offset
    cut = data.draw(st.integers(0, data_offset))
    path = tmp_path / "cut.gguf"
    path.write_bytes(full[:cut])
    with pytest.raises(InputError):
        read_gguf(path)


def _write_projector(path: Path, *, names: tuple[str, ...] = ("v.blk.0.attn_q.weight",
                                                             "mm.0.weight")) -> Path:
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_uint32("clip.vision.block_count", 1)
    for i, name in enumerate(names):
        writer.add_tensor(name, _random((EMBED, EMBED), i).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_folder_with_an_mmproj_counts_the_projector_beside_the_model(tmp_path: Path) -> None:
    """llama-server --mmproj loads the projector on the GPU beside the model: a folder holding
    both counts both, the projector's tensors as the vision tower."""
    from vramest.api import estimate

    alone = tmp_path / "alone"
    alone.mkdir()
    write_llama_gguf(alone / "tiny-Q4_K_M.gguf")
    pair = tmp_path / "pair"
    pair.mkdir()
    write_llama_gguf(pair / "tiny-Q4_K_M.gguf")
    _write_projector(pair / "mmproj-tiny-f16.gguf")
    projector_bytes = 2 * EMBED * EMBED * 2
    without = estimate(model=str(alone), profile="none").memory.weights.bytes
    with_projector = estimate(model=str(pair), profile="none").memory.weights.bytes
    assert with_projector - without == projector_bytes


def test_an_mmproj_with_language_model_tensors_is_refused(tmp_path: Path) -> None:
    write_llama_gguf(tmp_path / "tiny.gguf")
    _write_projector(tmp_path / "mmproj-bad.gguf", names=("blk.0.attn_q.weight",))
    with pytest.raises(InputError, match="holds language-model tensors"):
        inspect_path(tmp_path)


def test_a_qwen35_gguf_reads_its_deltanet_layers_from_the_ssm_keys(tmp_path: Path) -> None:
    """llama.cpp's converter writes Qwen3-Next/3.5's DeltaNet geometry as ssm.* keys and the
    attention interval as full_attention_interval: a file of 8 blocks with interval 4 has 6
    layers of recurrent state and 2 of KV, not 8 llama-style attention layers."""
    from vramest.api import estimate

    path = tmp_path / "qwen35-tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen35")
    writer.add_block_count(8)
    writer.add_context_length(4096)
    writer.add_embedding_length(EMBED)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(8)
    writer.add_head_count_kv(2)
    writer.add_key_length(64)
    writer.add_value_length(64)
    writer.add_uint32("qwen35.ssm.conv_kernel", 4)
    writer.add_uint32("qwen35.ssm.state_size", 32)
    writer.add_uint32("qwen35.ssm.group_count", 4)
    writer.add_uint32("qwen35.ssm.time_step_rank", 8)
    writer.add_uint32("qwen35.ssm.inner_size", 8 * 32)
    writer.add_uint32("qwen35.full_attention_interval", 4)
    writer.add_token_list([f"tok{i}" for i in range(VOCAB)])
    writer.add_tensor("token_embd.weight", _random((VOCAB, EMBED)).astype(np.float16))
    writer.add_tensor("blk.0.ffn_up.weight", _random((FFN, EMBED)).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shape = estimate(model=str(path), profile="none").model.shape
    assert shape.state_layers == 6
    assert shape.num_layers - shape.state_layers == 2
