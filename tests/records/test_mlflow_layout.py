"""What a researcher sees in MLflow's UI: accuracies in percent as in ltbench's reports, a run's charts led by
the training loss and the validation and test accuracy, the ratio spelled alike in params and tags, class
names in per_class_acc.csv; and reports read runs of this layout and of the older one alike."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.experiment.suite import build_suite
from harness.records.mlflow_names import epoch_metric, final_metric, is_accuracy, read_back
from harness.records.storage import Storage
from harness.records.tracker import Tracker
from harness.records.tracking_uri import default_tracking_uri
from harness.reports.runs import run_row


def test_names_sections_and_units() -> None:
    assert [epoch_metric(n) for n in ("train_loss", "val_mean_class_acc", "test_top1")] == [
        "curves/train_loss",
        "curves/val_mean_class_acc",
        "curves/test_top1",
    ]
    assert epoch_metric("val_few_acc") == "shots/val_few_acc" and epoch_metric("lr") == "optimizer/lr"
    assert epoch_metric("epoch_seconds") == "speed/epoch_seconds" and final_metric("test_top1") == "final/test_top1"
    assert is_accuracy("tau1_test_mean_class_acc") and not is_accuracy("chosen_tau") and not is_accuracy("lr")
    new = {"final/test_top1": 70.0, "shots/test_few_acc": 12.5, "final/chosen_tau": 0.8, "curves/train_loss": 0.5}
    old = {"final_test_top1": 0.7, "test_few_acc": 0.125, "final_chosen_tau": 0.8, "train_loss": 0.5}
    assert read_back(new, {"ltbench.accuracy_unit": "%"}) == pytest.approx(read_back(old, {}))
    assert read_back(old, {}) == old


def write_result(store: Storage, key: str) -> None:
    metrics = {"test_top1": 0.7, "test_mean_class_acc": 0.65, "val_top1": 0.6, "test_few_acc": 0.1}
    result = {
        "metrics": {**metrics, "test_few_classes": 2, "chosen_tau": 0.8},
        "variants": {"tau1": {"test_top1": 0.5}},
        "history": [{"epoch": 1, "train_loss": 1.5, "lr": 0.1, "val_mean_class_acc": 0.4, "val_many_acc": 0.5,
                     "epoch_seconds": 3.0, "time": 1.7e9}],
        "device": "cpu",
        "effective": {"precision": "fp32"},
        "versions": {},
        "per_class_acc": {"val": [0.5] * 10, "test": [0.25] * 10},
        "train_counts": [100] * 10,
        "class_counts": [100] * 10,
    }  # fmt: skip
    (store.local_root / key).mkdir(parents=True)
    (store.local_root / key / "result.json").write_text(json.dumps(result))


def test_a_finished_run_as_the_ui_shows_it_and_as_reports_read_it(tmp_path: Path) -> None:
    cfg = build_suite("quick", ["methods=[ce]", "seeds=[0]", "imbalance_ratios=[100]"]).trials[0]
    store = Storage.open(tmp_path / "trials")
    write_result(store, cfg.key)
    tracker = Tracker(default_tracking_uri(tmp_path), "quick", tmp_path, store)
    tracker.reconcile([(cfg, store.trial(cfg.key))], [])
    run = tracker.find_run(cfg.key)
    data = run.data
    assert data.params["imbalance_ratio"] == data.tags["ltbench.imbalance_ratio"] == "100"
    assert data.tags["ltbench.accuracy_unit"] == "%" and "ltbench.plugin.distribution" not in data.tags
    assert data.metrics["final/test_top1"] == pytest.approx(70.0)
    assert data.metrics["final/tau1_test_top1"] == pytest.approx(50.0)
    assert data.metrics["final/chosen_tau"] == pytest.approx(0.8)  # not an accuracy: as it is
    assert data.metrics["curves/val_mean_class_acc"] == pytest.approx(40.0) and data.metrics["curves/train_loss"] == 1.5
    assert data.metrics["shots/val_many_acc"] == pytest.approx(50.0) and "optimizer/lr" in data.metrics
    assert "speed/epoch_seconds" in data.metrics and not any(k.startswith("final_") for k in data.metrics)
    table = Path(tracker.client.download_artifacts(run.info.run_id, "per_class_acc.csv", str(tmp_path)))
    lines = table.read_text().splitlines()
    assert lines[0] == "class,class_name,train_count,lt_count,val_acc_percent,test_acc_percent"
    assert lines[1] == "0,T-shirt/top,100,100,50.00,25.00" and lines[10].startswith("9,Ankle boot,")
    row = run_row(run, "quick")  # reports see fractions, whatever the layout
    assert row["test_top1"] == pytest.approx(0.7) and row["tau1/test_top1"] == pytest.approx(0.5)
    assert row["imbalance_ratio"] == 100.0 and row["chosen_tau"] == pytest.approx(0.8)


def test_reports_group_old_and_new_spellings_of_a_ratio_as_one_configuration() -> None:
    def run(ratio: str) -> SimpleNamespace:
        params = {"dataset": "fashion-mnist-lt", "imbalance_ratio": ratio, "method": "ce", "seed": "0"}
        info = SimpleNamespace(run_id="r", status="FINISHED", start_time=0, end_time=1)
        return SimpleNamespace(info=info, data=SimpleNamespace(params=params, metrics={}, tags={}))

    old, new = run_row(run("100.0"), "quick"), run_row(run("100"), "quick")
    assert old["config_key"] == new["config_key"] and old["context_key"] == new["context_key"]


def test_a_plugin_method_names_its_distribution_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.plugins import loading
    from harness.records.tracker import plugin_tags

    assert plugin_tags("ce") == {}  # built in
    monkeypatch.setitem(loading.PLUGIN_ORIGIN, "deferred-ce", ("deferred-ce", "0.1.0"))
    assert plugin_tags("deferred-ce") == {
        "ltbench.plugin.distribution": "deferred-ce",
        "ltbench.plugin.version": "0.1.0",
    }
