"""Engines built on llama.cpp, by release: the llama.cpp build each one merged.

`--engine koboldcpp --engine-version 1.50.1` runs llama.cpp's rules of the build that release
carried (vramest.inference.engines.versions.LLAMACPP_TABLE), not today's.

KoboldCpp (LostRuins/koboldcpp) merges ggml-org/llama.cpp master into its own branch. For each
release tag, the build is the newest llama.cpp master commit merged into the tag (a merge's
second parent with no Concedo commit in its history), numbered as llama.cpp numbers its builds
(`git rev-list --count` of that commit: scripts/build-info.sh's BUILD_NUMBER). Checked on
KoboldCpp's own build-named tags: v1.55.1_b1933 → b1933 and v1.57_b2022 → b2022 exactly,
v1.59d_b2254 → b2255 and 1.67f_b3092 → b3093 (one merge commit more). Each row: the release,
the build, the llama.cpp commit merged (LostRuins/koboldcpp snapshot of 2024-10-11).
"""

from __future__ import annotations

from vramest.errors import InputError, short
from vramest.frozen import frozen


@frozen
class ForkBuild:
    fork: str  # "koboldcpp"
    release: tuple[int, ...]  # the fork's own release, as given
    build: int  # the llama.cpp build whose rules apply
    commit: str  # the llama.cpp commit merged (short hash); "" when past the table
    note: str  # what the output says


_KOBOLDCPP: tuple[tuple[tuple[int, ...], int, str], ...] = (
    ((1, 25), 594, "18e9dd87"),  # v1.25 2023-05-24
    ((1, 27), 612, "5e1eecfe"),  # v1.27 2023-06-01
    ((1, 28), 614, "24239f0d"),  # v1.28 2023-06-04
    ((1, 29), 634, "5b57a5b7"),  # v1.29 2023-06-07
    ((1, 30), 666, "74d4cfa3"),  # v1.30 2023-06-13
    ((1, 30, 2), 669, "92549202"),  # v1.30.2 2023-06-14
    ((1, 31), 696, "0711a5f6"),  # v1.31 2023-06-17
    ((1, 31, 2), 704, "ce2c7d72"),  # v1.31.2 2023-06-18
    ((1, 32), 720, "aacdbd40"),  # v1.32 2023-06-22
    ((1, 32, 1), 726, "d7b7484f"),  # v1.32.1 2023-06-23
    ((1, 33), 762, "96a712ca"),  # v1.33 2023-06-29
    ((1, 34, 2), 800, "481f793a"),  # v1.34.2 2023-07-07
    ((1, 35), 819, "5bf2a277"),  # v1.35 2023-07-12
    ((1, 36), 852, "294f4245"),  # v1.36 2023-07-20
    ((1, 37), 897, "5b2b2dc6"),  # v1.37 2023-07-24
    ((1, 38), 941, "220d9318"),  # v1.38 2023-08-02
    ((1, 39, 1), 956, "d9024df7"),  # v1.39.1 2023-08-07
    ((1, 40), 969, "f5bfea05"),  # v1.40 2023-08-09
    ((1, 41), 1045, "6e91a1b0"),  # v1.41 2023-08-24
    ((1, 42), 1128, "b532a69b"),  # v1.42 2023-08-30
    ((1, 43), 1187, "178b1850"),  # v1.43 2023-09-07
    ((1, 44), 1255, "7ddf1855"),  # v1.44 2023-09-20
    ((1, 44, 1), 1257, "d119c04c"),  # v1.44.1 2023-09-21
    ((1, 44, 2), 1267, "bc9d3e39"),  # v1.44.2 2023-09-23
    ((1, 45), 1299, "f5ef5cfb"),  # v1.45 2023-10-01
    ((1, 46), 1345, "a16e89ce"),  # v1.46 2023-10-08
    ((1, 46, 1), 1353, "eee42c67"),  # v1.46.1 2023-10-09
    ((1, 47), 1400, "60abea97"),  # v1.47 2023-10-20
    ((1, 48), 1483, "d9b33fe9"),  # v1.48 2023-11-04
    ((1, 48, 1), 1488, "3d48f42e"),  # v1.48.1 2023-11-05
    ((1, 49), 1503, "4a4fd3ee"),  # v1.49 2023-11-11
    ((1, 50), 1535, "bbecf3f4"),  # v1.50 2023-11-18
    ((1, 50, 1), 1547, "881800d1"),  # v1.50.1 2023-11-20
    ((1, 51), 1594, "8d6d9f03"),  # v1.51 2023-12-01
    ((1, 52), 1630, "113f9942"),  # v1.52 2023-12-13
    ((1, 52, 1), 1637, "55e87c37"),  # v1.52.1 2023-12-14
    ((1, 52, 2), 1645, "c6c4fc08"),  # v1.52.2 2023-12-17
    ((1, 53), 1691, "7082d24c"),  # v1.53 2023-12-23
    ((1, 54), 1742, "edd1ab7b"),  # v1.54 2024-01-01
    ((1, 55), 1805, "4f56458d"),  # v1.55 2024-01-10
    ((1, 56), 1983, "a1d6df12"),  # v1.56 2024-01-27
    ((1, 57), 2099, "a6e514a8"),  # v1.57 2024-02-08
    ((1, 57, 1), 2106, "44fbe343"),  # v1.57.1 2024-02-09
    ((1, 58), 2167, "5bf2b94d"),  # v1.58 2024-02-17
    ((1, 59), 2251, "fd43d66f"),  # v1.59 2024-02-24
    ((1, 59, 1), 2263, "f7625019"),  # v1.59.1 2024-02-26
    ((1, 60), 2329, "67be2ce1"),  # v1.60 2024-03-04
    ((1, 60, 1), 2344, "6a87ac3a"),  # v1.60.1 2024-03-05
    ((1, 61), 2401, "828defef"),  # v1.61 2024-03-12
    ((1, 61, 1), 2409, "306d34be"),  # v1.61.1 2024-03-13
    ((1, 61, 2), 2416, "19885d20"),  # v1.61.2 2024-03-14
    ((1, 62), 2628, "d752327c"),  # v1.62 2024-04-09
    ((1, 62, 1), 2637, "400d5d72"),  # v1.62.1 2024-04-09
    ((1, 63), 2699, "0e4802b2"),  # v1.63 2024-04-20
    ((1, 64), 2775, "a8f9b076"),  # v1.64 2024-05-01
    ((1, 64, 1), 2777, "1613ef8d"),  # v1.64.1 2024-05-04
    ((1, 65), 2836, "8c570c94"),  # v1.65 2024-05-11
    ((1, 66), 2987, "0df0aa8e"),  # v1.66 2024-05-24
    ((1, 67), 3075, "3d7ebf63"),  # v1.67 2024-06-04
    ((1, 68), 3173, "a94e6ff8"),  # v1.68 2024-06-19
    ((1, 69), 3266, "1c5eba6f"),  # v1.69 2024-06-30
    ((1, 69, 1), 3281, "023b8807"),  # v1.69.1 2024-07-02
    ((1, 70), 3390, "cc7a2f61"),  # v1.70 2024-07-15
    ((1, 70, 1), 3398, "8fac431b"),  # v1.70.1 2024-07-16
    ((1, 71), 3454, "f19bf99c"),  # v1.71 2024-07-25
    ((1, 71, 1), 3482, "e54c35e4"),  # v1.71.1 2024-07-28
    ((1, 72), 3503, "0fbbd884"),  # v1.72 2024-08-02
    ((1, 73), 3600, "2fb92678"),  # v1.73 2024-08-19
    ((1, 73, 1), 3612, "b40eb848"),  # v1.73.1 2024-08-21
    ((1, 74), 3646, "cddae488"),  # v1.74 2024-08-30
    ((1, 75), 3798, "41f47787"),  # v1.75 2024-09-21
    ((1, 76), 3906, "7eee341b"),  # v1.76 2024-10-11
)
# llamafile (Mozilla-Ocho/llamafile) vendors llama.cpp in llama.cpp/; each release tag's
# llama.cpp/README.llamafile names the upstream commit under ORIGIN (0.2 and 0.3: "initially
# imported from" e9c1cecb; 0.4: PR #4406's head e1241d9b, merged as 799a1cb1). Builds by
# rev-list count as above; 0.8.13 through 0.9.3 (2025-05-14) keep 8b3befc0.
_LLAMAFILE: tuple[tuple[tuple[int, ...], int, str], ...] = (
    ((0, 1), 1496, "e9c1cecb"),  # 0.1 2023-11-20
    ((0, 4), 1629, "799a1cb1"),  # 0.4 2023-12-14 (Mixtral, PR #4406)
    ((0, 5), 1768, "b3a7c20b"),  # 0.5 2024-01-05
    ((0, 6, 1), 1805, "4f56458d"),  # 0.6.1 2024-01-19
    ((0, 6, 2), 1988, "6db2b41a"),  # 0.6.2 2024-01-27
    ((0, 7), 2491, "fa046eaf"),  # 0.7 2024-03-30
    ((0, 8), 2701, "b8109bc0"),  # 0.8 2024-04-24
    ((0, 8, 1), 2737, "46e12c46"),  # 0.8.1 2024-04-26
    ((0, 8, 2), 2806, "c780e753"),  # 0.8.2 2024-05-09
    ((0, 8, 5), 2977, "152da28a"),  # 0.8.5 2024-05-25
    ((0, 8, 13), 3599, "8b3befc0"),  # 0.8.13 2024-08-18, through 0.9.3
)
TABLES: dict[str, tuple[tuple[tuple[int, ...], int, str], ...]] = {
    "koboldcpp": _KOBOLDCPP, "llamafile": _LLAMAFILE}
# the newest release each snapshot shows; a later one is given today's llama.cpp rules
LAST_KNOWN: dict[str, tuple[int, ...]] = {"koboldcpp": (1, 76), "llamafile": (0, 9, 3)}
NAMES: dict[str, str] = {"koboldcpp": "KoboldCpp", "llamafile": "llamafile"}


def _release(text: str) -> tuple[int, ...] | None:
    raw = text.strip().lower().split("==")[-1].lstrip("v").split()[0] if text.strip() else ""
    parts = raw.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and len(p) <= 4 for p in parts):
        return None
    return tuple(int(p) for p in parts)


def fork_build(fork: str, version: str) -> ForkBuild | None:
    """The llama.cpp build a fork's release carried; None when `version` is a llama.cpp build
    (`b1428`, `llamacpp==b1428`) or the fork has no table. Releases newer than the table get
    None too: today's llama.cpp rules apply (the note in versions.DEFAULTS says which)."""
    table = TABLES.get(fork)
    text = version.strip().lower()
    if table is None or text.startswith(("b", "llamacpp==", "llama.cpp==", "llama-cpp==")):
        return None
    release = _release(text)
    if release is None:
        raise InputError(f"{NAMES[fork]} version {short(version)} is not understood; give a "
                         "release such as 1.50.1, or a llama.cpp build such as b1547.")
    if release < table[0][0]:
        raise InputError(f"{NAMES[fork]} {short(version)} is older than the releases mapped to "
                         f"llama.cpp builds ({'.'.join(map(str, table[0][0]))} onward).")
    last = LAST_KNOWN[fork]
    if release > last and release[:len(last)] != last:
        return None
    row = max((r for r in table if r[0] <= release), key=lambda r: r[0])
    shown = ".".join(map(str, release))
    return ForkBuild(fork, release, row[1], row[2],
                     f"{NAMES[fork]} {shown} taken as llama.cpp b{row[1]} (the llama.cpp "
                     f"commit {row[2]} it carries)")


def past_table(fork: str, version: str) -> str | None:
    """The note for a fork release newer than its table (today's llama.cpp rules apply, as
    fork_build says); None for a mapped release or a llama.cpp build."""
    text = version.strip().lower()
    if fork not in TABLES or fork_build(fork, version) is not None \
            or text.startswith(("b", "llamacpp==", "llama.cpp==", "llama-cpp==")):
        return None
    shown = ".".join(map(str, _release(text) or ()))
    last = ".".join(map(str, LAST_KNOWN[fork]))
    return (f"{NAMES[fork]} {shown} is newer than the releases mapped to llama.cpp builds "
            f"(through {last}): today's llama.cpp rules")
