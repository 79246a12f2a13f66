"""CI capacity checks: specs, verdicts, exit codes, reports (JUnit parsed back), baselines,
the pytest fixture and the shipped examples."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vramest
from vramest.capacity import (
    CheckReport,
    SpecError,
    assert_capacity,
    check,
    load_spec,
    parse_spec,
    write_baseline,
)
from vramest.capacity.spec import DEPLOYMENT_KEYS, parse_headroom
from vramest.cli import main
from vramest.errors import InputError
from vramest.frozen import FrozenInstanceError
from vramest.validation import PROFILE_DIR

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = ROOT / "examples" / "capacity.toml"
EXAMPLE_WORKFLOW = ROOT / "examples" / "github-actions-capacity.yml"

SMALL_OK = """
[[deployments]]
name = "small"
model = "meta-llama/Llama-3.2-1B"
dtype = "bf16"
ctx = "4k"
gpu = "h100"
headroom = "10%"
min_decode_tokens_per_s = 10
"""

TOO_BIG = """
[[deployments]]
name = "big"
model = "meta-llama/Llama-3.1-70B"
dtype = "bf16"
ctx = "8k"
gpu = "4090"
"""


def write(tmp_path: Path, text: str, name: str = "capacity.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one(**settings_: Any) -> dict[str, Any]:
    """A spec mapping with one deployment (a small model on an H100 unless overridden)."""
    deployment = {"name": "d", "model": "meta-llama/Llama-3.2-1B", "ctx": 4096, "gpu": "h100"}
    deployment.update(settings_)
    return {"deployments": [deployment]}


# --- the shipped examples ------------------------------------------------------------------------


def test_example_spec_passes_with_the_shipped_catalog_and_hardware() -> None:
    report = check(EXAMPLE_SPEC)
    assert report.passed, [r.reasons for r in report.failed]
    assert len(report.results) >= 3
    assert {r.deployment.engine for r in report.results} >= {"vllm", "llamacpp"}


def test_example_workflow_runs_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLE_WORKFLOW.read_text(encoding="utf-8")
    try:
        import yaml
    except ModuleNotFoundError:
        commands = re.findall(r"^\s+(vramest check .*(?:\n\s{10}--.*)*)", text, re.M)
    else:
        steps = yaml.safe_load(text)["jobs"]["capacity"]["steps"]
        commands = [s["run"] for s in steps if "vramest check" in s.get("run", "")]
        assert any(s.get("uses", "").startswith("actions/checkout") for s in steps)
    assert len(commands) == 1
    command = commands[0].split(">>")[0]  # the Markdown goes to $GITHUB_STEP_SUMMARY
    argv = shlex.split(command)
    assert argv[:2] == ["vramest", "check"]
    monkeypatch.chdir(ROOT)
    junit = tmp_path / "capacity-junit.xml"
    argv = [str(junit) if a == "capacity-junit.xml" else a for a in argv]
    code, out, err = run_cli(capsys, *argv[2:])
    assert code == 0, err
    assert out.startswith("### ✅ vramest capacity")
    assert len(ET.parse(junit).getroot().iter("testcase").__next__().attrib["name"]) > 0


# --- verdicts ------------------------------------------------------------------------------------


def test_passing_spec_exit_0_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, str(write(tmp_path, SMALL_OK)))
    assert code == 0
    assert "pass" in out and "small" in out and "all pass" in out


def test_model_that_does_not_fit_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, str(write(tmp_path, SMALL_OK + TOO_BIG)))
    assert code == 1
    assert "FAIL" in out and "does not fit" in out and "1 of 2 fail" in out


def test_headroom_is_required_beyond_fitting() -> None:
    loose = check(one(headroom="10%")).results[0]
    tight = check(one(headroom="99%")).results[0]
    assert loose.passed and loose.figures.headroom_bytes > 0
    assert not tight.passed
    assert "headroom" in tight.reasons[0] and "required" in tight.reasons[0]
    in_bytes = check(one(headroom="2GiB")).results[0]
    assert in_bytes.figures.required_headroom_bytes == 2 * 1024**3


def test_speed_floors_fail_with_the_figure_and_the_floor() -> None:
    result = check(one(min_decode_tokens_per_s=1e6, max_time_to_first_token_s=1e-6)).results[0]
    assert not result.passed
    assert any("decode" in r and "below the floor of 1e+06" in r for r in result.reasons)
    assert any("time to first token" in r and "above the ceiling" in r for r in result.reasons)
    assert result.figures.decode_tokens_per_s is not None


def test_vllm_batch_beyond_its_kv_cache_fails() -> None:
    spec = one(model="meta-llama/Llama-3.1-70B", dtype="fp8", ctx="32k", num_gpus=2,
               engine="vllm", batch=64)
    result = check(spec).results[0]
    assert result.figures.max_concurrency is not None and result.figures.max_concurrency < 64
    assert any("vLLM's KV cache" in r for r in result.reasons)


def test_vllm_engine_options_are_forwarded() -> None:
    base = one(engine="vllm")
    default = check(base).results[0].figures
    lower = dict(base["deployments"][0], engine_options={"gpu_memory_utilization": 0.5})
    halved = check({"deployments": [lower]}).results[0].figures
    assert halved.usable_bytes < default.usable_bytes


def test_defaults_apply_and_deployments_override() -> None:
    spec = parse_spec({"defaults": {"gpu": "a100-80gb", "batch": 4, "headroom": "20%"},
                       "deployments": [{"name": "a", "params": "7B"},
                                       {"name": "b", "model": "llama-3.2-1b", "batch": 2,
                                        "gpu": "h100"}]})
    a, b = spec.deployments
    assert (a.gpu, a.batch, a.headroom.fraction) == ("a100-80gb", 4, 0.2)
    assert (b.gpu, b.batch, b.model) == ("h100", 2, "llama-3.2-1b")


def test_model_path_is_relative_to_the_spec(tmp_path: Path) -> None:
    from vramest.model.catalog import default_catalog

    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    config = default_catalog().get("llama-3.2-1b").config  # type: ignore[union-attr]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    spec_file = write(tmp_path, '[[deployments]]\nname = "local"\nmodel = "models/tiny"\n'
                      'gpu = "4090"\nctx = 2048\n')
    report = check(spec_file)
    assert report.passed
    assert report.results[0].deployment.model == str(folder.resolve())


def test_json_and_yaml_specs(tmp_path: Path) -> None:
    as_json = write(tmp_path, json.dumps(one()), "capacity.json")
    assert check(as_json).passed
    pytest.importorskip("yaml")
    as_yaml = write(tmp_path, "deployments:\n  - name: d\n    model: llama-3.2-1b\n"
                    "    gpu: h100\n", "capacity.yaml")
    assert check(as_yaml).passed


# --- invalid specs: every problem, with file, deployment and key ---------------------------------


def test_invalid_spec_lists_every_problem_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
[defaults]
headrom = "10%"

[[deployments]]
name = "typo"
model = "meta-llama/Llama-3.1-8B"
gpu = "h100"
ctx = [8192]
batch = "many"
min_decode_tokens_per_s = "fast"

[[deployments]]
name = "missing-file"
model = "./models/gone/config.json"
gpu = "h1000"

[[deployments]]
name = "typo"
params = "7B"
gpu = "h100"
engine = "vllm"
engine_options = { gpu_memory_utilisation = 0.8 }
""")
    code, out, err = run_cli(capsys, str(spec))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    problems = lines[:-1]
    assert lines[-1].startswith("vramest: 8 problems in")
    expected = [
        ("defaults: headrom:", "did you mean headroom?"),
        ("deployment 'typo': ctx:", "got a list"),
        ("deployment 'typo': batch:", "whole number"),
        ("deployment 'typo': min_decode_tokens_per_s:", "positive number"),
        ("deployment 'missing-file': model:", "no such file or folder"),
        ("deployment 'missing-file': gpu:", "Unknown GPU 'h1000'"),
        ("deployment 'typo': name:", "unique"),
        ("deployment 'typo': engine_options.gpu_memory_utilisation:",
         "did you mean gpu_memory_utilization?"),
    ]
    assert len(problems) == len(expected)
    for where, what in expected:
        assert any(p.startswith(f"{spec}: {where}") and what in p for p in problems), where


@pytest.mark.parametrize(("data", "fragment"), [
    ({"deployments": []}, "deployments: needs a non-empty list"),
    ({"deployment": [{"name": "x"}]}, "did you mean deployments?"),
    ([1, 2], "must be a table"),
    ({"deployments": [{"name": "x", "gpu": "h100"}]}, "model: is required"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b"}]}, "gpu: is required"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "params": "7B", "gpu": "h100"}]},
     "model or params, not both"),
    ({"deployments": [{"name": "x", "model": "lama-3.2-1b", "gpu": "h100"}]}, "unknown model"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100", "num_gpus": 3,
                       "pp": 2}]}, "not a multiple of pp"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100", "dtype": "int5"}]},
     "dtype: Unknown --dtype"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100", "batch": True}]},
     "got a boolean"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100",
                       "engine_options": {"n_gpu_layers": 10}}]}, "engine generic takes no options"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100", "engine": "vllm",
                       "engine_options": {"gpu_memory_utilization": "abc"}}]},
     "gpu_memory_utilization 'abc' is not a number"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100", "engine": "vllm",
                       "engine_options": {"block_size": True}}]},
     "block_size True is not a whole number"),
    ({"deployments": [{"name": "x", "model": "llama-3.2-1b", "gpu": "h100", "engine": "llamacpp",
                       "engine_options": {"n_gpu_layers": "all"}}]},
     "n_gpu_layers 'all' is not a layer count"),
])
def test_single_problems(data: object, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(data, source="s.toml")
    assert any(fragment in str(p) for p in caught.value.problems), caught.value.problems
    assert all(str(p).startswith("s.toml: ") for p in caught.value.problems)


def test_estimator_errors_are_spec_problems_of_their_deployment() -> None:
    with pytest.raises(SpecError) as caught:
        check(one(num_gpus=3))  # 32 heads do not split over 3 GPUs
    assert "deployment 'd'" in str(caught.value) and "Tensor parallelism" in str(caught.value)


def test_profiles_are_validated_and_applied(tmp_path: Path) -> None:
    """A spec's calibration profile must load; a good one sets the deployment's constants."""
    write(tmp_path, "{}", "profile.json")
    bad = write(tmp_path, SMALL_OK + 'profile = "profile.json"\n')
    with pytest.raises(SpecError, match="profile"):
        check(bad)
    good_profile = PROFILE_DIR / \
        "cpu-amd-epyc-1-thread.json"
    good = write(tmp_path, SMALL_OK + f'profile = "{good_profile}"\n', "good.toml")
    assert check(good).results


def test_unreadable_spec_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, str(tmp_path / "nope.toml"))[0] == 2
    bad = write(tmp_path, "[[deployments]\nname=", "broken.toml")
    code, _, err = run_cli(capsys, str(bad))
    assert code == 2 and "is not valid TOML" in err
    assert run_cli(capsys, str(write(tmp_path, "x", "spec.ini")))[0] == 2


@pytest.mark.parametrize(("text", "fraction", "size"), [
    ("10%", 0.1, 0), (0.25, 0.25, 0), ("2GiB", 0.0, 2 * 1024**3), (1024, 0.0, 1024)])
def test_headroom_forms(text: str | float, fraction: float, size: int) -> None:
    headroom = parse_headroom(text)
    assert headroom.fraction == pytest.approx(fraction) and headroom.bytes == size


@pytest.mark.parametrize("text", ["100%", "-5%", 1.5, "lots", True, None])
def test_bad_headroom(text: object) -> None:
    with pytest.raises(InputError):
        parse_headroom(text)


# --- output formats ------------------------------------------------------------------------------


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, str(write(tmp_path, SMALL_OK + TOO_BIG)), "--json")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    small, big = data["deployments"]
    assert (small["name"], small["passed"], big["name"], big["passed"]) == (
        "small", True, "big", False)
    for key in ("per_gpu_bytes", "usable_bytes", "headroom_bytes", "required_headroom_bytes",
                "decode_tokens_per_s", "time_to_first_token_s"):
        assert key in small["figures"]
    assert big["reasons"] and "does not fit" in big["reasons"][0]
    assert small["requirements"]["min_decode_tokens_per_s"] == 10


def test_junit_xml_parsed_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "reports" / "capacity.xml"
    junit.parent.mkdir()
    junit.write_text("stale", encoding="utf-8")
    code, _, _ = run_cli(capsys, str(write(tmp_path, SMALL_OK + TOO_BIG)), "--junit-xml",
                         str(junit))
    assert code == 1
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"small", "big"}
    assert cases["small"].find("failure") is None
    failure = cases["big"].find("failure")
    assert failure is not None and "does not fit" in failure.get("message", "")
    assert list(junit.parent.iterdir()) == [junit]  # the temporary file was renamed away


def test_junit_xml_for_an_invalid_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "capacity.xml"
    code, _, _ = run_cli(capsys, str(write(tmp_path, '[[deployments]]\nnme = "x"\n')),
                         "--junit-xml", str(junit))
    assert code == 2
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None and "did you mean name?" in (error.text or "")


def test_markdown_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, str(write(tmp_path, SMALL_OK + TOO_BIG)), "--markdown")
    assert code == 1
    assert out.startswith("### ❌ vramest capacity")
    assert "| ❌ fail | big |" in out and "**big**: FAILS" in out


def test_json_and_markdown_are_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, str(write(tmp_path, SMALL_OK)), "--json", "--markdown")[0] == 2


# --- baselines -----------------------------------------------------------------------------------


def test_baseline_round_trip_and_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, SMALL_OK)
    baseline = tmp_path / "baseline.json"
    assert run_cli(capsys, str(spec), "--baseline", str(baseline))[0] == 2  # not there yet
    assert run_cli(capsys, str(spec), "--update-baseline")[0] == 2  # needs --baseline FILE
    code, _, err = run_cli(capsys, str(spec), "--baseline", str(baseline), "--update-baseline")
    assert code == 0 and "updated" in err
    accepted = json.loads(baseline.read_text())
    assert set(accepted["deployments"]["small"]) >= {"per_gpu_bytes", "decode_tokens_per_s"}
    assert run_cli(capsys, str(spec), "--baseline", str(baseline))[0] == 0

    write(tmp_path, SMALL_OK.replace('ctx = "4k"', 'ctx = "64k"'))  # still fits, uses more
    code, out, _ = run_cli(capsys, str(spec), "--baseline", str(baseline), "--json")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    reasons = data["deployments"][0]["reasons"]
    assert any(r.startswith("memory per GPU grew") and "beyond the 5% tolerance" in r
               for r in reasons), reasons
    assert data["deployments"][0]["figures"]["headroom_bytes"] > 0  # it fits: only drift fails
    code, out, _ = run_cli(capsys, str(spec), "--baseline", str(baseline), "--tolerance", "1000%",
                           "--json")
    reasons = json.loads(out)["deployments"][0]["reasons"]
    assert not any(r.startswith("memory per GPU") for r in reasons), reasons


def test_baseline_notes_new_deployments(tmp_path: Path) -> None:
    first = check(one())
    baseline = tmp_path / "b.json"
    write_baseline(first, baseline)
    spec = one()
    spec["deployments"].append(dict(spec["deployments"][0], name="new"))
    report = check(spec, baseline=baseline)
    assert report.passed
    assert report.results[1].notes and "not in the baseline" in report.results[1].notes[0]


def test_speed_drop_is_drift(tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    write_baseline(check(one()), baseline)
    slower = check(one(batch=64), baseline=baseline).results[0]
    assert any(r.startswith("decode speed dropped") for r in slower.reasons), slower.reasons


def test_corrupt_baseline_is_an_input_error(tmp_path: Path) -> None:
    baseline = write(tmp_path, "{not json", "b.json")
    with pytest.raises(InputError, match="not valid JSON"):
        check(one(), baseline=baseline)
    write(tmp_path, '{"deployments": {}}', "b.json")
    with pytest.raises(InputError, match="not a vramest capacity baseline"):
        check(one(), baseline=baseline)


# --- Python API and pytest fixture ---------------------------------------------------------------


def test_python_api_is_exported_and_frozen(tmp_path: Path) -> None:
    report = vramest.check(write(tmp_path, SMALL_OK))
    assert isinstance(report, CheckReport) and report.passed
    with pytest.raises(FrozenInstanceError):
        report.results[0].figures.per_gpu_bytes = 0  # type: ignore[misc]
    assert assert_capacity(one()).passed
    with pytest.raises(AssertionError, match="does not fit"):
        assert_capacity(one(model="meta-llama/Llama-3.1-70B", dtype="bf16", gpu="4090"))


def test_pytest_fixture(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", capacity=SMALL_OK, too_big=TOO_BIG)
    pytester.makepyfile("""
        def test_fits(vramest_capacity):
            assert vramest_capacity("capacity.toml").passed

        def test_too_big(vramest_capacity):
            vramest_capacity("too_big.toml")
    """)
    # installed, the pytest11 entry point loads the plugin; from a bare checkout, name it
    installed = any(ep.value == "vramest.pytest_plugin"
                    for ep in importlib.metadata.entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "vramest.pytest_plugin"]
    result = pytester.runpytest(*plugin, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*big: does not fit*"])


# --- training deployments -----------------------------------------------------------------------


def _train_one(train: dict[str, Any], **settings_: Any) -> dict[str, Any]:
    deployment = {"name": "t", "model": "meta-llama/Llama-3.2-1B", "gpu": "h100", "train": train}
    deployment.update(settings_)
    return {"deployments": [deployment]}


def test_a_train_table_checks_a_training_step() -> None:
    from vramest.training import estimate_training

    result = check(_train_one({"method": "lora", "seq": "4k", "micro_batch": 2,
                               "lora_targets": ["q_proj", "v_proj"]})).results[0]
    expected = estimate_training(model="meta-llama/Llama-3.2-1B", gpu="h100", method="lora",
                                 seq=4096, micro_batch=2, lora_targets="q_proj,v_proj")
    f = result.figures
    assert result.passed and f.per_gpu_bytes == expected.fit.required_bytes
    assert f.max_seq == expected.fit.max_seq and f.train_tokens_per_s_per_gpu is not None
    assert f.decode_tokens_per_s is None  # a training step serves nothing
    settings_ = result.to_json()["settings"]
    assert settings_["train"]["lora_targets"] == "q_proj,v_proj" and "ctx" not in settings_


def test_training_floor_and_fit_fail_with_reasons() -> None:
    slow = check(_train_one({"method": "full"}, min_train_tokens_per_s=1e8)).results[0]
    assert any("below the floor" in reason for reason in slow.reasons)
    big = check(_train_one({"method": "full", "seq": "32k", "micro_batch": 8},
                           model="meta-llama/Llama-3.1-70B", gpu="4090")).results[0]
    assert not big.passed and big.reasons[0].startswith("does not fit")


def test_training_spec_problems_are_all_reported() -> None:
    data = {"defaults": {"engine": "vllm", "train": {"method": "lora"}},  # inherited: ignored
            "deployments": [
                {"name": "a", "model": "meta-llama/Llama-3.2-1B", "gpu": "h100", "ctx": 4096,
                 "train": {"metod": "qlora"}},
                {"name": "b", "model": "meta-llama/Llama-3.2-1B", "gpu": "h100",
                 "train": {"method": "magic"}},
                {"name": "c", "model": "meta-llama/Llama-3.2-1B", "gpu": "h100",
                 "train": {"offload": "optimizer"}}]}
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="t.toml")
    text = "\n".join(str(p) for p in info.value.problems)
    assert "deployment 'a': train: unknown setting 'metod'; did you mean method?" in text
    assert "deployment 'a': ctx: describes serving" in text
    assert "deployment 'b': train: Unknown method 'magic'" in text
    assert "deployment 'c': train: offload needs sharding" in text
    assert "engine" not in text
    with pytest.raises(SpecError, match="only applies to a training deployment"):
        parse_spec(one(min_train_tokens_per_s=10))


def test_default_train_settings_merge_key_by_key() -> None:
    spec = parse_spec({"defaults": {"train": {"method": "qlora", "seq": 1024}},
                       "deployments": [{"name": "t", "model": "meta-llama/Llama-3.2-1B",
                                        "gpu": "h100", "train": {"seq": 2048}}]})
    assert dict(spec.deployments[0].train) == {"method": "qlora", "seq": 2048}


def test_training_reports_show_the_training_column(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SMALL_OK + """
[[deployments]]
name = "tune"
model = "meta-llama/Llama-3.2-1B"
gpu = "h100"
train = { method = "qlora", seq = 2048 }
min_train_tokens_per_s = 100
""")
    code, out, _ = run_cli(capsys, str(path), "--markdown")
    assert code == 0 and "train tok/s per GPU (floor)" in out and "(≥ 100)" in out
    html = tmp_path / "report.html"
    assert main(["check", str(path), "--html", str(html)]) == 0
    capsys.readouterr()
    assert "tune: training memory at the peak" in html.read_text(encoding="utf-8")


# --- robustness ----------------------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) |
            st.text(max_size=12) | st.sampled_from(["8k", "10%", "2GiB", "h100", "llama-3.2-1b",
                                                    "vllm", "7B", "bf16", "../x.json"]))
_keys = st.sampled_from([*DEPLOYMENT_KEYS, "defaults", "deployments", "nme"]) | st.text(max_size=8)
_junk = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) |
                     st.dictionaries(_keys, inner, max_size=6), max_leaves=25)
_deployment = st.dictionaries(st.sampled_from(DEPLOYMENT_KEYS), _junk, max_size=8)


@pytest.mark.slow  # torch/transformers or seconds: make test runs it, test-fast does not
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_junk, st.fixed_dictionaries({"deployments": st.lists(_deployment, max_size=3)},
                                              optional={"defaults": _deployment})))
def test_spec_parser_never_crashes(data: object) -> None:
    try:
        spec = parse_spec(data, source="junk.toml")
    except SpecError as exc:
        assert exc.problems and all(str(p).startswith("junk.toml") for p in exc.problems)
    else:
        assert spec.deployments


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([".toml", ".json", ".yaml"]))
def test_reading_junk_files_never_crashes(tmp_path_factory: pytest.TempPathFactory, raw: bytes,
                                          suffix: str) -> None:
    path = tmp_path_factory.mktemp("junk") / f"spec{suffix}"
    path.write_bytes(raw)
    with contextlib.suppress(SpecError):
        load_spec(path)


_plausible = st.fixed_dictionaries(
    {"name": st.just("p"), "gpu": st.sampled_from(["h100", "4090", "a100-40gb", "m2-ultra"]),
     "model": st.sampled_from(["llama-3.2-1b", "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V2-Lite",
                               "google/gemma-2-2b"])},
    optional={"ctx": st.integers(1, 1 << 20), "batch": st.integers(1, 512),
              "num_gpus": st.sampled_from([1, 2, 3, 4, 8]), "pp": st.sampled_from([1, 2]),
              "engine": st.sampled_from(["generic", "vllm", "llamacpp", "hf"]),
              "dtype": st.sampled_from(["bf16", "fp8", "int4", "q4_k_m"]),
              "kv_dtype": st.sampled_from(["fp16", "fp8", "q8_0"]),
              "prompt": st.integers(1, 1 << 16), "headroom": st.sampled_from(["0%", "50%", "1GiB"]),
              "reserve": st.sampled_from(["5%", "2GiB", 0.2]),
              "train": st.fixed_dictionaries({}, optional={
                  "method": st.sampled_from(["full", "lora", "qlora", "freeze"]),
                  "seq": st.integers(1, 1 << 17), "micro_batch": st.integers(1, 64),
                  "grad_checkpointing": st.booleans(), "zero": st.sampled_from([0, 1, 2, 3]),
                  "optimizer": st.sampled_from(["adamw", "adamw-8bit", "sgd", "adafactor"])})})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plausible)
def test_checking_plausible_deployments_never_crashes(deployment: dict[str, Any]) -> None:
    try:
        report = check({"deployments": [deployment]})
    except InputError:
        return
    result = report.results[0]
    assert result.passed == (not result.reasons)
    assert result.figures.per_gpu_bytes > 0


def test_check_html_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vramest check --html` writes one self-contained page: no scripts, no URLs."""
    from html.parser import HTMLParser

    spec = Path(__file__).resolve().parent.parent / "examples" / "capacity.toml"
    out = tmp_path / "capacity.html"
    assert main(["check", str(spec), "--html", str(out)]) == 0
    capsys.readouterr()

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.attrs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            self.attrs += [value or "" for _, value in attrs]

    parser = Collect()
    parser.feed(out.read_text())
    assert "script" not in parser.tags and "table" in parser.tags
    assert not any("http" in value for value in parser.attrs)
    assert "memory breakdown" in out.read_text()
