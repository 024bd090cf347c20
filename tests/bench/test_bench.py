"""`ltbench bench`: runs end to end at tiny sizes and writes a well-formed bench.json. No timing assertions:
figures depend on the machine; what is checked is that each is measured, positive, and reported
consistently (ratio, target, verdict), and that missing pieces are reported as such."""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import harness.bench.run as bench
from harness.bench import grouping, sharing
from harness.bench.cases import cifar_case
from harness.bench.common import Figure
from harness.cli import main
from harness.core.errors import LtbenchError
from harness.data.pipeline import TensorBatches
from harness.execution.grouping import GROUPING_PAYS, resolve_group_size, runs_today
from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.training.precision import resolve_precision
from tests.fakes import write_fashion_mnist

TINY = bench.Sizes(
    pipeline_images=64,
    synthetic_images=64,
    train_images={"resnet-small-gray": 32, "resnet32": 16},
    rounds=1,
    min_seconds=0.0,
    matmul_n=64,
)
SECTIONS = {"pipeline", "trainer", "bf16", "stage_sharing", "flops", "makespan", "grouping"}


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images per class for the quick suite's profile (1000 for class 0)."""
    root = tmp_path_factory.mktemp("fashion-full")
    write_fashion_mnist(root, per_class=1000, test_per_class=1)
    return root


def _median_ratio(samples: dict, side: str, reference: str, scale: float = 1.0) -> float:
    return statistics.median(a * scale / b for a, b in zip(samples[side], samples[reference], strict=True))


def _check_figure(section: str, f: dict) -> None:
    """Measured, positive, and its ratio, target and verdict consistent with the recorded samples."""
    assert f["value"] > 0 and f["baseline"] > 0 and f["case"] and f["value_name"] and f["baseline_name"]
    samples = f["detail"].get("samples")
    if section == "pipeline":
        expected = _median_ratio(samples, "device", "torchvision")
    elif section == "trainer":
        expected = _median_ratio(samples, "harness", f"bare {f['detail']['precision']}")
    elif section == "bf16":
        expected = _median_ratio(samples, "bare bf16", "bare fp32")
    elif section == "flops":
        side = "harness" if "bare loop" not in f["case"] else "bare bf16"
        n = f["baseline_name"].split()[1].split("x")[0]
        scale = f["detail"]["flops_per_image"] / (2.0 * int(n) ** 3)
        expected = _median_ratio(samples, side, f"matmul {f['detail']['precision']}", scale)
        assert f["value"] == pytest.approx(f["detail"]["flops_per_image"] * statistics.median(samples[side]))
    elif section == "grouping" and f["unit"] == "images/s":
        expected = _median_ratio(samples, f["detail"]["side"], f["detail"]["baseline_side"])
    else:
        expected = f["baseline"] / f["value"]
    assert f["ratio"] == pytest.approx(expected)
    if f["target"] is None:
        assert f["verdict"] == "-"
    else:
        assert f["verdict"] == ("PASS" if f["ratio"] >= f["target"] else "BELOW")


@pytest.mark.integration
def test_bench_quick_end_to_end(monkeypatch, restore_threads, tmp_path: Path, fashion_root: Path, capsys) -> None:
    monkeypatch.setitem(bench.SIZES, "quick", TINY)
    argv = ["bench", "--quick", "--device", "cpu", "--threads", "1", "--data-root", str(fashion_root)]
    assert main([*argv, "--results-dir", str(tmp_path)]) == 0

    result = json.loads((tmp_path / "bench.json").read_text())
    machine = result["machine"]
    for key in ("cpu_model", "logical_cpus", "torch_threads", "torch", "device"):
        assert machine[key]
    assert machine["torch_threads"] == 1 and machine["device"].startswith("cpu")
    assert result["settings"]["quick"] is True and result["settings"]["sizes"]["matmul_n"] == 64
    assert set(result["sections"]) == SECTIONS

    sections = result["sections"]
    pipeline_cases = [f["case"] for f in sections["pipeline"]["figures"]]
    # real files found under --data-root for Fashion-MNIST; CIFAR-10 is not there, so synthetic
    assert pipeline_cases[0].startswith("fashion-mnist-lt") and pipeline_cases[1].startswith("synthetic")
    assert [f["detail"]["workers"] for f in sections["pipeline"]["figures"]] == [0, 0]  # 1 thread -> 0 workers
    trainer = sections["trainer"]["figures"]
    assert [f["detail"]["model"] for f in trainer] == ["resnet-small-gray", "resnet32"]
    # the cifar-lt recipe's `auto` is fp32 on a CPU, in NHWC
    assert trainer[1]["detail"]["precision"] == "fp32" and trainer[1]["detail"]["channels_last"]
    assert sections["bf16"]["status"] == "ok" or sections["bf16"]["status"].startswith("not supported")
    assert sections["flops"]["figures"][0]["detail"]["flops_per_image"] > 0
    assert sections["stage_sharing"]["status"] == "ok" or sections["stage_sharing"]["status"].startswith("unavailable")
    grouping = sections["grouping"]  # on a CPU: the quick suite's model, K = 2 and 4 in turn and fused
    assert [(f["detail"]["model"], f["detail"]["group_size"], f["detail"]["fusion"]) for f in grouping["figures"]] == [
        ("resnet-small-gray", 2, "none"),
        ("resnet-small-gray", 4, "none"),
        ("resnet-small-gray", 2, "fused"),
        ("resnet-small-gray", 4, "fused"),
    ]
    assert "grouping" in grouping["notes"]["verdict"] and "pay" in grouping["notes"]["verdict"]
    for name, section in sections.items():
        assert section["status"] != "ok" or section["figures"]
        for figure in section["figures"]:
            _check_figure(name, figure)

    out = capsys.readouterr().out
    assert "(a) data pipeline" in out and "written:" in out
    assert out.count("PASS") + out.count("BELOW") >= 4


def test_the_makespan_section_alone_joins_the_other_sections(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bench.json"
    assert main(["bench", "--makespan", "--results-dir", str(tmp_path)]) == 0  # no bench.json yet
    before = json.loads(path.read_text())
    before["sections"]["flops"] = {"title": "(d)", "status": "ok", "figures": [], "notes": {}}
    path.write_text(json.dumps(before))
    assert main(["bench", "--makespan", "--results-dir", str(tmp_path)]) == 0
    result = json.loads(path.read_text())
    assert set(result["sections"]) == {"flops", "makespan"}  # the sections measured before are kept
    figures = result["sections"]["makespan"]["figures"]
    assert [f["case"] for f in figures] == [
        "8 GPUs x 4: no barrier vs barrier, simulated",
        "8 GPUs x 4: lower bound vs no barrier, simulated",
        "64 GPUs x 4: no barrier vs barrier, simulated",
        "64 GPUs x 4: lower bound vs no barrier, simulated",
    ]
    for figure in figures:
        _check_figure("makespan", figure)
        assert figure["detail"]["trials"] == 264
    assert figures[0]["ratio"] > 1  # 8 GPUs: the barrier costs time
    assert "(e) makespan" in capsys.readouterr().out


@pytest.mark.integration
def test_the_grouping_section_alone_joins_the_others_and_auto_follows_its_verdict(
    monkeypatch, restore_threads, tmp_path: Path, fashion_root: Path, capsys
) -> None:
    monkeypatch.setitem(bench.SIZES, "quick", TINY)
    path = tmp_path / "bench.json"
    flops = {"title": "(d)", "status": "ok", "figures": [], "notes": {}}
    path.write_text(json.dumps({"settings": {"device": "cpu"}, "sections": {"flops": flops}}))
    argv = ["bench", "--grouping", "--quick", "--device", "cpu", "--threads", "1", "--data-root", str(fashion_root)]
    assert main([*argv, "--results-dir", str(tmp_path)]) == 0
    result = json.loads(path.read_text())
    assert set(result["sections"]) == {"flops", "grouping"}  # the sections measured before are kept
    section = result["sections"]["grouping"]
    for figure in section["figures"]:
        _check_figure("grouping", figure)
        assert figure["detail"]["vs_bare_loop"] > 0 and figure["detail"]["fraction_of_matmul_flops"] > 0
    assert "(f) grouping" in capsys.readouterr().out
    trials = build_suite("quick").trials
    size, why = resolve_group_size("auto", trials, path)
    best = max((f for f in section["figures"] if runs_today(f["detail"])), key=lambda f: f["ratio"])
    assert size == (best["detail"]["group_size"] if best["ratio"] >= GROUPING_PAYS else 1), why
    assert ("does not pay" in section["notes"]["verdict"]) == (size == 1)


def test_flops_per_image_of_resnet32_matches_the_spec() -> None:
    """SPEC section 2: ~69 M multiply-adds per 32x32 forward, so a training step (forward plus a backward
    of about twice the forward) costs about 3 x 2 x 69 M FLOPs per image."""
    from harness.bench.cases import synthetic_cifar
    from harness.bench.training import image_flops
    from harness.data.pipeline import TensorBatches
    from harness.models import build_model
    from harness.training.precision import FP32

    data = synthetic_cifar(8)
    batches = TensorBatches(data.train, data, torch.device("cpu"), 4, True)
    flops = image_flops(build_model("resnet32", 10, 3), batches, 8, FP32)
    assert flops == pytest.approx(3 * 2 * 69e6, rel=0.1)


def test_stage_sharing_without_the_plan_module(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "harness.experiment.plan", None)  # makes `import harness.experiment.plan` fail
    section = sharing.measure()
    assert section.status == "unavailable: harness.experiment.plan not present" and section.figures == []


@pytest.mark.parametrize("takes", ["suite", "trials"])
def test_stage_sharing_reports_the_plan_budget(monkeypatch, takes: str) -> None:
    calls = []

    def by_name(suite):
        calls.append(suite)
        return types.SimpleNamespace(shared_epochs=100, retrain_epochs=250)

    def by_trials(trials):
        calls.append(trials)
        return types.SimpleNamespace(shared_epochs=100, retrain_epochs=150)

    plan = types.ModuleType("harness.experiment.plan")
    plan.epoch_budget = by_name if takes == "suite" else by_trials  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.experiment.plan", plan)
    section = sharing.measure(("quick",))
    (figure,) = section.figures
    if takes == "suite":
        assert calls == ["quick"] and (figure.ratio, figure.verdict) == (2.5, "PASS")
    else:
        assert len(calls[0]) == len(bench_suite_trials("quick")) and (figure.ratio, figure.verdict) == (1.5, "BELOW")
    assert (figure.value, figure.baseline) == (100, 250 if takes == "suite" else 150)


def bench_suite_trials(name: str) -> list:
    from harness.experiment.suite import build_suite

    return build_suite(name).trials


def test_stage_sharing_with_a_plan_lacking_epoch_budget(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "harness.experiment.plan", types.ModuleType("harness.experiment.plan"))
    assert sharing.measure().status == "unavailable: harness.experiment.plan has no epoch_budget"


def test_verdicts() -> None:
    def figure(ratio: float, target: float | None) -> Figure:
        return Figure("c", ratio, 1.0, ratio, "images/s", "a", "b", target)

    assert figure(5.0, 5.0).verdict == "PASS"
    assert figure(4.99, 5.0).verdict == "BELOW"
    assert figure(0.1, None).verdict == "-"


def test_table_shows_sections_without_figures() -> None:
    result = {
        "machine": {"cpu_model": "x", "usable_cpus": 2, "torch_threads": 2, "torch": "t", "device": "cpu"},
        "seconds": 1.0,
        "sections": {
            "stage_sharing": {
                "title": "(c) stage sharing",
                "status": "unavailable: harness.experiment.plan not present",
                "figures": [],
                "notes": {},
            }
        },
    }
    assert "unavailable: harness.experiment.plan not present" in bench.format_table(result)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--threads", "0"], "--threads must be a positive integer"),
    ],
)
def test_bad_arguments_are_user_errors(argv, message, restore_threads, capsys) -> None:
    assert main(["bench", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(LtbenchError, match=message.replace("-", r"\-")):
        bench.run_bench(**({"device": "gpu"} if argv[0] == "--device" else {"threads": 0}))


def test_compile_without_grouping_is_refused_before_anything_is_measured(tmp_path: Path, capsys) -> None:
    assert main(["bench", "--compile", "--results-dir", str(tmp_path)]) == 2
    assert "--compile measures section (f) only: add --grouping" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_compiled_sides_first_call_is_timed_once() -> None:
    """The compile time of a compiled side is its first call's seconds (compare's untimed warm-up)."""
    calls: list[float] = []
    seconds: dict[str, float] = {}

    def epoch() -> int:
        calls.append(time.perf_counter())
        time.sleep(0.05 if len(calls) == 1 else 0.0)  # the first call compiles
        return 7

    run = grouping.first_call_timed(epoch, torch.device("cpu"), seconds, "K=1 compiled fp32")
    assert run() == 7 and seconds["K=1 compiled fp32"] >= 0.05
    first = seconds["K=1 compiled fp32"]
    assert run() == 7 and seconds == {"K=1 compiled fp32": first} and len(calls) == 2


@pytest.mark.parametrize("mode", [m for m in grouping.MODES], ids=lambda m: m.name)
def test_every_side_of_the_grouping_section_trains_an_epoch_on_the_cpu(mode: grouping.Mode) -> None:
    """The GPU-only sides (graphs, streams) run here too, falling back to eager steps on the default stream,
    so a GPU session does not find them broken; each trains K x the full batches an epoch."""
    case = cifar_case("/nonexistent", 96)  # no CIFAR files there: synthetic images of CIFAR's shape
    case.recipe = dataclasses.replace(case.recipe, batch_size=32)  # NHWC, as the cifar-lt recipe
    device = torch.device("cpu")
    batches = TensorBatches(case.train, case.data, device, case.pad, case.flip, case.recipe.channels_last)
    torch.manual_seed(0)
    initial = build_model("resnet32", 10, 3)
    setup = grouping.GroupSetup(initial, batches, case, resolve_precision("fp32", device), 2)
    loop = grouping.fused_loop(setup, mode) if mode.fused else grouping.group_loop(setup, mode)
    assert loop() == 2 * 96 and loop() == 2 * 96
    for model in (setup.model(), setup.fused_model()):  # the layout the recipe asks for, fused or not
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)


def test_the_suite_hours_take_each_modes_fastest_group_against_one_trial() -> None:
    """GPU-only arithmetic of section (f), checked here: per mode (in turn, captured, streams, fused, fused
    captured, compiled) the cifar-lt work over its fastest K's images/s, against one eager trial's (fp32:
    the cifar-lt recipe's `auto` on a GPU)."""
    modes = [*grouping.MODES, grouping.COMPILED]
    figures = [
        Figure(
            f"K={k} {m.name}",
            1000.0 * k * (i + 1),
            1000.0,
            0.0,
            "images/s",
            "",
            "",
            detail={**m.detail(), "group_size": k, "precision": "fp32"},
        )
        for i, m in enumerate(modes)
        for k in (2, 4)
    ]
    hours = grouping.suite_hours(figures, {"K=1 eager fp32": [900.0, 1000.0, 1100.0]}, ["fp32"])
    assert [h.case.split(", ")[1:3] for h in hours] == [[m.name, "K=4"] for m in modes]
    work = hours[0].detail["work"]
    assert work > 0 and all(h.detail["work"] == work for h in hours)
    for i, h in enumerate(hours):
        assert h.value == pytest.approx(work / (4000.0 * (i + 1)) / 3600)
        assert h.baseline == pytest.approx(work / 1000.0 / 3600) and h.ratio == pytest.approx(4.0 * (i + 1))
