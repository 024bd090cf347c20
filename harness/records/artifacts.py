"""The file names a trial writes and MLflow keeps: one place, so the trainer that writes them, the tracker
that logs them and the reports that read them back can never disagree on a name.

In a trial directory (`<store>/<key>/`, the store `results/trials` unless `--storage` names another):
- MANIFEST_FILE: which source images went to train and validation (written before training);
- CHECKPOINT_FILE: the last finished epoch, for resuming;
- ANALYSIS_FILE: classifier weight norms and feature correlations (numpy .npz);
- FEATURE_CACHE (beside a stage-1 backbone): features of its un-augmented images, shared by stage two;
- RESULT_FILE: the final result (metrics, per-class accuracy, history); written last, so its presence means
  the trial is complete.

Artifacts of an MLflow run: the LOGGED_FILES copied from the trial directory, plus CONFIG_FILE (the trial's
configuration) and PER_CLASS_FILE (per-class accuracy as CSV) that the tracker writes itself.
"""

from __future__ import annotations

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
MANIFEST_FILE = "manifest.json"
ANALYSIS_FILE = "analysis.npz"
FEATURE_CACHE = "features.pt"
CONFIG_FILE = "config.json"
PER_CLASS_FILE = "per_class_acc.csv"
LOGGED_FILES = (RESULT_FILE, MANIFEST_FILE, ANALYSIS_FILE)
