"""The shipped catalog: published configs give the published parameter counts."""

from __future__ import annotations

import pytest

from vramest.model.catalog import default_catalog

CATALOG = default_catalog()
# Published totals that count something the running model does not hold twice: a tied
# lm_head stored again in the checkpoint (Qwen3-0.6B, Falcon), DeepSeek-V3's extra
# multi-token-prediction layer and FP8 scale tensors.
COUNTS_DIFFER = {"Qwen/Qwen3-0.6B": "stored tied lm_head", "tiiuae/falcon-7b": "stored lm_head",
                 "tiiuae/falcon-180B": "stored lm_head",
                 "deepseek-ai/DeepSeek-V3": "MTP layer + scales",
                 "deepseek-ai/DeepSeek-R1": "MTP layer + scales",
                 # model cards round (and count GLM's stored MTP layer); see the entries' notes
                 "zai-org/GLM-4.5": "card rounds, MTP layer", "zai-org/GLM-4.5-Air": "card rounds",
                 "moonshotai/Kimi-K2-Instruct": "card rounds 1.026T to 1T",
                 "Qwen/Qwen3-Next-80B-A3B-Instruct": "stored MTP layer",
                 "deepseek-ai/DeepSeek-V3-0324": "MTP layer + scales",
                 "deepseek-ai/DeepSeek-R1-0528": "MTP layer + scales",
                 "deepseek-ai/DeepSeek-V3.1": "MTP layer + scales",
                 "zai-org/GLM-4.6": "stored MTP layer",
                 "deepseek-ai/DeepSeek-V3.2-Exp": "MTP layer and FP8 scales, as DeepSeek-V3"}


def test_catalog_is_large_and_varied() -> None:
    assert len(CATALOG.entries) >= 30
    shapes = [e.shape() for e in CATALOG.entries]
    assert any(s.is_moe for s in shapes)
    assert any(s.is_mla for s in shapes)
    assert any(s.sliding_window for s in shapes)
    assert any(s.num_kv_heads == 1 for s in shapes)  # multi-query
    assert any(1 < s.num_kv_heads < s.num_heads for s in shapes)  # grouped-query


@pytest.mark.parametrize("entry", [e for e in CATALOG.entries if e.published_params],
                         ids=lambda e: e.id)
def test_shape_gives_the_published_parameter_count(entry) -> None:  # type: ignore[no-untyped-def]
    computed = entry.shape().param_count()
    tolerance = 0.25 if entry.id in COUNTS_DIFFER else 0.005
    assert abs(computed / entry.published_params - 1) < tolerance


def test_names_are_unique() -> None:
    seen: set[str] = set()
    for entry in CATALOG.entries:
        for name in (entry.id.lower(), *entry.aliases):
            assert name not in seen, name
            seen.add(name)
        assert entry.source.startswith("http")


@pytest.mark.parametrize(("model", "active_b"), [
    ("mistralai/Mixtral-8x7B-v0.1", 12.9), ("Qwen/Qwen3-30B-A3B", 3.3),
    ("deepseek-ai/DeepSeek-V3", 37), ("Qwen/Qwen3-235B-A22B", 22),
])
def test_moe_active_parameters_match_the_model_cards(model: str, active_b: float) -> None:
    """Model cards: Mixtral 12.9B active, Qwen3-30B-A3B 3.3B, DeepSeek-V3 37B, Qwen3-235B 22B."""
    active = CATALOG.find(model).shape().active_param_count()
    assert active / 1e9 == pytest.approx(active_b, rel=0.03)


def test_sliding_and_mla_kv_layouts() -> None:
    gemma2 = CATALOG.find("google/gemma-2-9b").shape()
    assert gemma2.kinds().count("sliding") == gemma2.num_layers // 2
    gemma3 = CATALOG.find("google/gemma-3-27b-it").shape()
    assert gemma3.kinds().count("full") == gemma3.num_layers // 6
    assert CATALOG.find("deepseek-ai/DeepSeek-V3").shape().kv_lora_rank == 512


QUANTIZED_WITH_LISTED_FILES = [e for e in CATALOG.entries if e.published_file_bytes]


def test_official_quantized_checkpoints_are_carried() -> None:
    methods = {str(e.config.get("quantization_config", {}).get("quant_method"))
               for e in CATALOG.entries}
    assert {"awq", "gptq", "fbgemm_fp8", "compressed-tensors", "bitsandbytes"} <= methods
    assert len(QUANTIZED_WITH_LISTED_FILES) >= 5


@pytest.mark.parametrize("entry", QUANTIZED_WITH_LISTED_FILES, ids=lambda e: e.id)
def test_quantized_weights_match_the_listed_file_sizes(entry) -> None:  # type: ignore[no-untyped-def]
    """The repositories' file listings (3 significant figures) against the weights vramest
    computes from the checkpoint's own quantization layout. GPTQ files also hold an int32
    g_idx per input feature (~0.1%), which the per-weight bits leave out."""
    from vramest import estimate

    weights = estimate(model=entry.id, ctx=1024).memory.weights.bytes
    assert entry.file_bytes_source
    assert abs(weights / entry.published_file_bytes - 1) < 0.005, weights


def test_meta_fp8_release_keeps_attention_and_the_end_layers_in_16_bit() -> None:
    """Meta's loader quantizes only the MLP (w1, w3, w2) of layers 1..n-2 to FP8; the rest of
    the published 405,853,388,800 parameters stay bf16 (fp32 row scales are ~0.01%)."""
    from vramest import estimate

    mlp_fp8 = 124 * 3 * 16384 * 53248
    expected = mlp_fp8 * 1 + (405_853_388_800 - mlp_fp8) * 2
    weights = estimate(model="meta-llama/Llama-3.1-405B-Instruct-FP8", ctx=1024).memory.weights
    assert abs(weights.bytes / expected - 1) < 1e-3


def test_double_quantized_bitsandbytes_config_reads_as_bnb_nf4_dq() -> None:
    from vramest.model.resolve import resolve_model

    info = resolve_model(model="unsloth/Meta-Llama-3.1-8B-bnb-4bit")
    assert info.native_format == "bnb-nf4-dq"


def test_a_shipped_entry_decoded_alone_is_the_catalog_s_entry() -> None:
    """shipped_entry finds an entry by its "id" key and decodes that object alone: every
    object in models.json opens with "id", and each one so decoded equals the full parse."""
    import json

    from vramest.data import read_text
    from vramest.model.catalog import default_catalog, shipped_entry

    assert all(next(iter(raw)) == "id" for raw in json.loads(read_text("models.json"))["models"])
    for entry in default_catalog().entries:
        alone = shipped_entry(entry.id)
        assert alone is not None and (alone.id, alone.aliases, alone.config, alone.notes) == (
            entry.id, entry.aliases, entry.config, entry.notes)
        assert alone.shape() == entry.shape()
    assert shipped_entry("no/such-model") is None


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "Qwen/Qwen2.5-7B\n", "模型", "", "id"])
def test_a_shipped_object_lookup_of_an_odd_value_finds_nothing_and_raises_nothing(
        value: str) -> None:
    from vramest.data import shipped_object

    assert shipped_object("models.json", "id", value) is None
    assert shipped_object("gpus.json", "name", value) is None


def test_each_scaling_series_ascends_so_a_bisection_finds_the_neighbours() -> None:
    """shape_for_params bisects SCALING_SERIES instead of parsing every entry: each series
    (but the MoE one, which is searched whole) must list its sizes in ascending order."""
    from vramest.model.catalog import SCALING_SERIES, default_catalog

    for family, names in SCALING_SERIES.items():
        if family == "moe":
            continue
        counts = [default_catalog().get(name).shape().param_count() for name in names]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), family


def test_a_shipped_object_longer_than_the_first_window_is_read_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """shipped_object decodes a window of bytes around the object and widens it while the
    object runs past; a cut never falls inside a multi-byte character."""
    import json

    import vramest.data as data

    big = {"id": "big", "notes": "é" * 9000 + "×" * 5000, "n": [1.5, None, True]}
    text = json.dumps({"models": [{"id": "small"}, big, {"id": "after"}]},
                      ensure_ascii=False, indent=1)
    monkeypatch.setattr(data, "shipped_bytes", lambda name: text.encode("utf-8"))
    assert data.shipped_object("x.json", "id", "big") == big
    assert data.shipped_object("x.json", "id", "after") == {"id": "after"}
    assert data.shipped_object("x.json", "id", "missing") is None


@pytest.mark.parametrize("params", [5e8, 1.2e9, 1235814400, 1235814401, 7e9, 70553706496,
                                    7.1e10, 3e11, 5e11, 2e12])
def test_a_misleading_published_count_never_moves_the_split(monkeypatch: pytest.MonkeyPatch,
                                                            params: float) -> None:
    """The split is found on the published counts and confirmed on the parsed ones: with the
    published counts scrambled the borrowed shape is the same."""
    import vramest.model.catalog as catalog
    from vramest.frozen import replace

    honest = catalog._borrow(int(params), "llama", None, catalog.shipped_entry)
    scrambled = {name: replace(catalog.shipped_entry(name), published_params=p)
                 for name, p in zip(catalog.SCALING_SERIES["llama"],
                                    (9e11, 1, None, 5e9, 2e9), strict=True)}
    assert catalog._borrow(int(params), "llama", None, scrambled.get) == honest


def test_a_scaling_series_parameter_count_is_linear_in_the_mlp_width() -> None:
    """_fit_intermediate reads the narrowest fitting width off a line through the counts at
    widths 0 and 1: every series' shapes must count their MLP linearly."""
    from vramest.frozen import replace
    from vramest.model.catalog import SCALING_SERIES, default_catalog

    for family, names in SCALING_SERIES.items():
        if family == "moe":
            continue
        for name in names:
            shape = default_catalog().get(name).shape()
            at = {w: replace(shape, intermediate_size=w).param_count() for w in (0, 1, 64, 5000)}
            assert at[64] == at[0] + 64 * (at[1] - at[0]), name
            assert at[5000] == at[0] + 5000 * (at[1] - at[0]), name
