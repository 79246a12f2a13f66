"""--engine tgi: the KV block size TGI's launcher picks (launcher/src/main.rs resolve_attention,
models/globals.py BLOCK_SIZE) and the warm-up batch's blocks at max_total_tokens (router warm-up,
flash_causal_lm.py from_pb), at huggingface/text-generation-inference's tags."""

from __future__ import annotations

import json
from pathlib import Path

import vramest

LOGS = json.loads((Path(__file__).parent / "data/engines/tgi_logs.json").read_text())["cases"]


def tgi(model: str, gpu: str, num_gpus: int = 1, **options: object) -> dict[str, object]:
    est = vramest.estimate(model=model, gpu=gpu, num_gpus=num_gpus, engine="tgi",
                           engine_options=options)
    assert est.engine_report is not None
    return est.engine_report.to_json()


def test_flashinfer_blocks_of_one_token_before_v3() -> None:
    """TGI issue #2748 (2.4.0, Meta-Llama-3.1-8B-Instruct, NUM_SHARD=2 on L40S): the log reads
    "KV-cache blocks: 123449, size: 1": flashinfer's one-token blocks already in 2.4 (the
    launcher's default from v2.3.0, commit e415b690), not from 3.0."""
    r = tgi("meta-llama/Llama-3.1-8B", "l40s", 2, version="2.4.0",
            max_batch_prefill_tokens=16182, max_input_tokens=8000, max_total_tokens=8192)
    assert r["block_size"] == 1
    assert tgi("meta-llama/Llama-3.1-8B", "l40s", version="2.2.0")["block_size"] == 16


def test_models_flashinfer_cannot_serve_fall_back_to_larger_blocks() -> None:
    """resolve_attention logs "Forcing attention to '{fallback}' because model falcon requires
    it" / "because head dim is not supported by flashinfer": flashdecoding (256-token blocks)
    on compute capability 8.0 and up, paged (16) below it from v2.3.1; Gemma 2 is forced only
    in v2.3.x."""
    assert tgi("tiiuae/falcon-7b", "a100", version="3.0.0")["block_size"] == 256
    assert tgi("microsoft/phi-2", "a100", version="3.0.0")["block_size"] == 256  # head size 80
    assert tgi("microsoft/phi-2", "t4", version="3.0.0")["block_size"] == 16
    assert tgi("microsoft/phi-2", "t4", version="2.3.0")["block_size"] == 256
    assert tgi("google/gemma-2-9b", "a100", version="2.3.1")["block_size"] == 256
    assert tgi("google/gemma-2-9b", "a100", version="2.4.0")["block_size"] == 1
    assert tgi("meta-llama/Llama-3.1-8B", "a100", version="3.0.0", attention="paged"
               )["block_size"] == 16  # ATTENTION set by hand wins


def test_gemma3_vlm_head_size_is_read_from_its_text_config_from_3_3() -> None:
    # before v3.3.0 the launcher finds no head_dim in Gemma 3's top-level config (no
    # hidden_size either) and forces flashdecoding; Config::get_head_dim reads text_config
    assert tgi("google/gemma-3-27b-it", "a100", version="3.2.1")["block_size"] == 256
    assert tgi("google/gemma-3-27b-it", "a100", version="3.3.0")["block_size"] == 1


def test_warmup_blocks_of_issue_1831_are_window_capped_requests_at_max_total_tokens() -> None:
    """TGI issue #1831 (2.0.0, Mistral 7B, one A100 80GB, --max-input-length 8000
    --max-total-tokens 8512 --max-batch-prefill-tokens 32768): "MAX_BATCH_TOTAL_TOKENS inferred
    to be 425472". The warm-up sends five requests (4 x 8000 + 768 input tokens), each asking
    for 8512 - input new tokens: 8511 slots, 532 blocks, capped at Mistral's 4096-token window
    (256 blocks) by FlashMistralBatch in 2.0."""
    case = LOGS[0]
    r = tgi(case["model"], case["gpu"], version=case["version"], **case["settings"])
    assert any("20480 tokens" in str(rule) for rule in r["rules"])  # type: ignore[attr-defined]
    observed = case["observed"]["max_batch_total_tokens"]
    assert abs(int(r["max_batch_total_tokens"]) / observed - 1) < 0.05  # type: ignore[call-overload]



def test_v2_default_prefill_is_max_input_tokens_plus_50() -> None:
    """TGI issue #2007 (2.0.4, Meta-Llama-3-70B-Instruct on 8 H100, no length flags): "the
    default `max_batch_prefill_tokens=4145`": max_input_tokens min(8192, 4096) - 1 plus 50
    (launcher/src/main.rs at v2.0.0); v2.4.1 dropped to min(4096, max_position_embeddings)."""
    r = tgi("meta-llama/Meta-Llama-3-70B", "h100", 8, version="2.0.4")
    assert r["max_batch_prefill_tokens"] == 4145
    assert tgi("meta-llama/Meta-Llama-3-70B", "h100", 8, version="2.4.1"
               )["max_batch_prefill_tokens"] == 4096
