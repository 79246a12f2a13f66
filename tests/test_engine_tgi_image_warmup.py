"""--engine tgi: the v3 warm-up's image on Gemma 3 (TGI v3.2.x builds a dense mask and runs
masked attention over the whole prompt), against huggingface/text-generation-inference
issue #3130."""

from __future__ import annotations

import vramest

GEMMA3_3130 = {"max_batch_prefill_tokens": 31000, "max_input_length": 30000}


def tgi(model: str, version: str, num_gpus: int = 4, **options: object) -> dict[str, object]:
    est = vramest.estimate(model=model, gpu="a100 pcie 80gb", num_gpus=num_gpus, engine="tgi",
                           engine_options={"version": version, **options})
    assert est.engine_report is not None
    return est.engine_report.to_json()


def test_gemma3_warmup_with_an_image_refuses_31000_prefill_tokens_on_3_2_1() -> None:
    # issue #3130: TGI 3.2.1, 4 A100 80GB, --max-input-length 30000
    # --max-batch-prefill-tokens 31000: "Not enough memory to handle 31000 prefill tokens"
    r = tgi("google/gemma-3-27b-it", "3.2.1", **GEMMA3_3130)
    assert r["starts"] is False


def test_the_masked_path_is_the_one_that_costs() -> None:
    masked = tgi("google/gemma-3-27b-it", "3.2.1", **GEMMA3_3130)
    flash = tgi("google/gemma-3-27b-it", "3.3.0", **GEMMA3_3130)  # PR #3167: flashinfer
    # two requests (30000 + 1000 tokens) padded to 30000: a float32 mask of 2 x 30000^2 and
    # two bf16 score copies of 2 x 8 heads per rank x 30000^2
    scores = 2 * 30000**2 * 4 + 2 * 2 * 8 * 30000**2 * 2
    # (the logits of every prefill token come after the layers, so the peak is the larger)
    assert int(masked["warmup_activation_bytes"]) > scores  # type: ignore[call-overload]
    assert int(flash["warmup_activation_bytes"]) < scores  # type: ignore[call-overload]


def test_a_text_only_gemma3_has_no_image_in_its_warmup() -> None:
    # gemma-3-1b is model_type gemma3_text: TGI serves it with FlashCausalLM, no pixel values
    short = tgi("google/gemma-3-1b-it", "3.2.1", num_gpus=1, max_batch_prefill_tokens=8192)
    assert not any("image" in str(rule) for rule in short["rules"])  # type: ignore[attr-defined]
