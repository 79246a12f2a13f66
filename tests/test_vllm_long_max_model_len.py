"""vLLM refuses a max_model_len beyond the model's derived length (vLLM issue #3676's
"User-specified max_model_len (131072) is greater than the derived max_model_len (None=8192 in
model's config.json)"), unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (PR #7080)."""

from __future__ import annotations

import vramest


def _start(**options: object) -> vramest.Estimate:
    return vramest.estimate(model="CohereForAI/c4ai-command-r-v01", gpu="h100", num_gpus=4,
                            engine="vllm", engine_options={"version": "0.4.0", **options})


def test_command_r_at_131072_is_refused_as_issue_3676_logs() -> None:
    """Command-R's config says 8192 (its model_max_length 131072 came later for llama.cpp)."""
    refused = _start(max_model_len=131072)
    assert not refused.fit.fits
    assert "derived max_model_len 8192" in refused.engine_report.refusal  # type: ignore[union-attr]
    assert _start(max_model_len=8192).fit.fits


def test_the_override_and_older_releases_start() -> None:
    assert _start(max_model_len=131072, allow_long_max_model_len=True).engine_report.refusal \
        == ""  # type: ignore[union-attr]
    assert "derived" not in (_start(max_model_len=131072, version="0.3.3")
                             .engine_report.refusal)  # type: ignore[union-attr]


def test_a_rope_scaled_model_may_go_to_its_scaled_length() -> None:
    """deepseek-coder-6.7b's linear factor 4 over 16384: vLLM derives 65536. Qwen2.5, whose
    config has no rope_scaling (YaRN is added by the user), stops at 32768."""
    def refusal(model: str, length: int) -> str:
        est = vramest.estimate(model=model, gpu="h100", engine="vllm",
                               engine_options={"max_model_len": length})
        return est.engine_report.refusal  # type: ignore[union-attr, no-any-return]

    assert "derived" not in refusal("deepseek-ai/deepseek-coder-6.7b-base", 65536)
    assert "derived max_model_len 65536" in refusal("deepseek-ai/deepseek-coder-6.7b-base", 65537)
    assert "derived max_model_len 32768" in refusal("Qwen/Qwen2.5-7B-Instruct", 131072)
