"""Trace mode on torch: fake-tensor peaks equal real ones, full-size traces are fast and light.

Every test here needs torch and transformers; they share one import and run in well under a
minute together.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from vramest.cli import main  # noqa: E402
from vramest.errors import InputError  # noqa: E402
from vramest.tracing.inference import PHASES, trace, trace_config  # noqa: E402
from vramest.tracing.tracking import ACTIVATIONS, KV_CACHE, PARAMS, LiveBytesTracker  # noqa: E402

pytestmark = pytest.mark.slow

TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 176,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 512, "max_position_embeddings": 512, "tie_word_embeddings": False}
TINY_MIXTRAL = {"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "vocab_size": 512, "max_position_embeddings": 512, "num_local_experts": 4,
                "num_experts_per_tok": 2, "sliding_window": None}


def test_tracker_counts_each_storage_once_and_sees_frees() -> None:
    with LiveBytesTracker() as tracker:
        a = torch.zeros(1000, dtype=torch.float32)  # 4000 bytes
        view = a[10:20]  # a view: no new storage
        b = a * 2  # 4000 more
        assert tracker.live_bytes == 8000
        del b
        assert tracker.live_bytes == 4000
        c = torch.ones(10, dtype=torch.bfloat16)  # 20 bytes, below the 8000 peak
    assert tracker.peak.bytes == 8000
    assert tracker.peak.op == "mul.Tensor"
    del a, view, c


def test_tracker_labels_parameters_and_watched_tensors() -> None:
    weight = torch.nn.Parameter(torch.zeros(256))  # 1024 bytes, made before the tracker
    cache: list[torch.Tensor] = []
    tracker = LiveBytesTracker()
    tracker.label([weight], PARAMS)
    tracker.watch(KV_CACHE, lambda: cache)
    with tracker:
        cache.append(torch.zeros(64))  # 256 bytes
        scratch = torch.zeros(32)  # 128 bytes
    assert tracker.peak.by_label == {PARAMS: 1024, KV_CACHE: 256, ACTIVATIONS: 128}
    del scratch


@pytest.mark.parametrize(("config", "attn"), [(TINY_LLAMA, "sdpa"), (TINY_LLAMA, "eager"),
                                              (TINY_MIXTRAL, "sdpa")])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fake_peak_equals_real_cpu_peak(config: dict, attn: str, dtype: str) -> None:
    """The same tracker on real CPU tensors and on fake ones: byte-identical peaks."""
    settings = {"dtype": dtype, "ctx": 96, "batch": 2, "attn": attn, "decode_steps": 2}
    real = trace_config(config, fake=False, **settings)
    fake = trace_config(config, fake=True, **settings)
    assert [p.name for p in real.phases] == list(PHASES)
    for r, f in zip(real.phases, fake.phases, strict=True):
        assert (r.peak_bytes, r.params_bytes, r.kv_cache_bytes, r.activations_bytes) == \
            (f.peak_bytes, f.params_bytes, f.kv_cache_bytes, f.activations_bytes), r.name
        assert r.peak_op == f.peak_op
    prefill = fake.phase("prefill")
    assert prefill is not None
    assert prefill.kv_cache_bytes == 2 * 2 * 2 * 96 * 2 * 16 * (4 if dtype == "fp32" else 2)


def test_70b_at_8k_is_light() -> None:
    # how fast is `make bench`'s business; a wall-clock bound here failed on a loaded machine
    result = trace("meta-llama/Llama-3.1-70B", "bf16", 8192, 1, "sdpa")
    prefill = result.run.phase("prefill")
    assert prefill is not None
    assert prefill.params_bytes > 130 * 1024**3
    assert prefill.kv_cache_bytes == 80 * 8192 * 2 * 8 * 128 * 2
    assert result.run.rss_bytes < 2 * 1024**3  # the model would be 131 GiB
    assert abs(result.to_json()["difference"]["pct"]) < 1


def test_cli_json_output_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--model", "qwen/qwen2.5-0.5b", "--ctx", "1k", "--batch", "2",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["phases"]) == set(PHASES)
    for phase in data["phases"].values():
        for key in ("peak_bytes", "params_bytes", "kv_cache_bytes", "activations_bytes"):
            assert isinstance(phase[key], int)
        assert phase["peak_op"]
        assert phase["peak_bytes"] == phase["params_bytes"] + phase["kv_cache_bytes"] + \
            phase["activations_bytes"]
    assert isinstance(data["rss_bytes"], int) and data["seconds"] > 0
    assert set(data["memory"]) >= {"weights", "kv_cache", "activations", "overhead", "total"}
    assert "cpu sdpa via" in data["attention_kernel"]


def test_cli_text_and_phase_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--model", "gpt2", "--ctx", "256", "--phase", "prefill"]) == 0
    out = capsys.readouterr().out
    assert "prefill" in out and "decode " not in out and "analytic" in out


def test_unsupported_architecture_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"supports: .*llama"):
        trace("THUDM/chatglm3-6b", "bf16", 128, 1, "sdpa")
    assert main(["trace", "--model", "THUDM/chatglm3-6b"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bitsandbytes_leaves_fused_moe_experts_in_16_bit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A small Mixtral loaded 4-bit by transformers: the attention linears become NF4, the
    fused expert parameters stay bf16, as --engine hf reports."""
    pytest.importorskip("bitsandbytes")
    import transformers

    from vramest import estimate
    from vramest.inference.engines.startup import hf_startup

    config = dict(model_type="mixtral", hidden_size=64, intermediate_size=96,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=256, num_local_experts=4, num_experts_per_tok=2,
                  max_position_embeddings=512, tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config), dtype=torch.bfloat16)
    model.save_pretrained(tmp_path)
    quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                            bnb_4bit_compute_dtype=torch.bfloat16)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=quant, dtype=torch.bfloat16, device_map="cpu")
    experts = [p for name, p in loaded.named_parameters() if ".experts." in name]
    assert experts and all(p.dtype == torch.bfloat16 for p in experts)
    (tmp_path / "config.json").write_text(json.dumps(config))
    report = hf_startup(estimate(model=str(tmp_path / "config.json"), dtype="nf4", ctx=64))
    elements = sum(p.numel() for p in experts)
    assert report.unquantized_experts_bytes == round(elements * (2 - 4.5 / 8))
