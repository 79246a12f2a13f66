"""A llama.cpp fork's own release runs the rules of the llama.cpp build it merged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramest.errors import InputError
from vramest.inference.engines.llamacpp_forks import TABLES, fork_build
from vramest.inference.engines.versions import llamacpp_rules, parse_version


def test_koboldcpp_release_is_the_build_it_merged() -> None:
    # LostRuins/koboldcpp tag v1.50.1 (2023-11-20) merges ggml-org/llama.cpp 881800d1 of
    # 2023-11-20, build b1547; a patch release past the tagged ones keeps its minor's build
    row = fork_build("koboldcpp", "1.50.1")
    assert row is not None and row.build == 1547 and "b1547" in row.note
    assert fork_build("koboldcpp", "koboldcpp==v1.50.1") == row
    assert fork_build("koboldcpp", "1.50.3").build == 1547  # type: ignore[union-attr]
    # KoboldCpp's own build-named tags: v1.55.1_b1933 -> b1933; v1.57_b2022 -> b2022
    assert fork_build("koboldcpp", "1.56").build == 1983  # type: ignore[union-attr]


def test_koboldcpp_of_late_2023_splits_rows() -> None:
    # before ggml-org/llama.cpp PR #4766 (about b1840) matrices split by rows; KoboldCpp 1.56
    # (January 2024, b1983) has the layer split
    old = fork_build("koboldcpp", "1.50.1")
    new = fork_build("koboldcpp", "1.56")
    assert old is not None and new is not None
    assert not llamacpp_rules(parse_version("llamacpp", f"b{old.build}")).layer_split
    assert llamacpp_rules(parse_version("llamacpp", f"b{new.build}")).layer_split


def test_llama_cpp_builds_and_newer_releases_pass_through() -> None:
    assert fork_build("koboldcpp", "b1428") is None
    assert fork_build("koboldcpp", "llamacpp==b1428") is None
    assert fork_build("koboldcpp", "1.99") is None  # past the table: today's rules
    assert fork_build("koboldcpp", "1.76.2").build == 3906  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["latest", "1.2.3.4", "1.0"])
def test_bad_release_is_one_sentence(bad: str) -> None:
    with pytest.raises(InputError):
        fork_build("koboldcpp", bad)


@given(st.tuples(st.just(1), st.integers(25, 76), st.integers(0, 5)),
       st.tuples(st.just(1), st.integers(25, 76), st.integers(0, 5)))
def test_later_release_never_older_build(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    lo, hi = sorted((a, b))
    first, second = (fork_build("koboldcpp", ".".join(map(str, v))) for v in (lo, hi))
    assert first is not None and second is not None and first.build <= second.build


def test_table_is_sorted() -> None:
    for table in TABLES.values():
        assert [r[0] for r in table] == sorted(r[0] for r in table)
        assert [r[1] for r in table] == sorted(r[1] for r in table)


def test_llamafile_release_is_its_vendored_origin() -> None:
    # Mozilla-Ocho/llamafile tag 0.8.13's llama.cpp/README.llamafile: ORIGIN 8b3befc0
    # (2024-08-16), llama.cpp build b3599; 0.9.3 still vendors it
    assert fork_build("llamafile", "0.8.13").build == 3599  # type: ignore[union-attr]
    assert fork_build("llamafile", "0.9.3").build == 3599  # type: ignore[union-attr]
    assert fork_build("llamafile", "0.6").build == 1768  # type: ignore[union-attr]
    assert fork_build("llamafile", "0.10") is None  # past the snapshot: today's rules


def test_a_release_past_the_table_runs_with_todays_rules() -> None:
    # LostRuins/koboldcpp#1469: KoboldCpp 1.87.4 (newer than the table) ran gemma-3-27b Q4_K_M on
    # an RTX 5090 at --contextsize 40960 --flashattention --quantkv 1 --gpulayers 99. The release
    # is not a llama.cpp build: it must not be read as one (it raised before)
    import vramest

    est = vramest.estimate(model="gemma-3-27b", dtype="q4_k_m", gpu="rtx 5090", ctx=40960,
                           engine="koboldcpp", engine_options={
                               "version": "1.87.4", "n_gpu_layers": 99, "flash_attn": True,
                               "cache_type_k": "q8_0", "cache_type_v": "q8_0"})
    assert est.fit is not None and est.fit.fits
    assert any("newer than the releases mapped" in a for a in est.assumptions)
