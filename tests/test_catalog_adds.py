"""Ignore lists of quantized checkpoints read as compressed-tensors reads them (issue 18, item 7)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("pattern", "experts_kept_16_bit"), [
    ("re:.*mlp\\.(gate|up|gate_up|down)_proj.*", False),  # the dense MLP alone
    ("re:.*mlp.*", True),  # every MLP, experts included
    ("re:.*shared_experts.*", False),
])
def test_a_regex_ignore_pattern_is_matched_as_compressed_tensors_matches_it(
        pattern: str, experts_kept_16_bit: bool) -> None:
    from vramest.model.precisions import unquantized_modules

    roles = {r for group, _ in unquantized_modules([pattern]) for r in group}
    assert ("expert_gate" in roles) is experts_kept_16_bit
    assert "ffn_gate" in roles or pattern == "re:.*shared_experts.*"
