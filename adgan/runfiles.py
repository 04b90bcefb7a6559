"""Names of the files of a training run, shared by ``adgan.train``, the sweep's trials and ``adgan export``
without importing torch."""

from __future__ import annotations

# What ``train(out=...)`` writes into a run directory.
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint", "train_state.pt")
# ``adgan train``'s lock of its run folder (an OS lock held while it runs: adgan.sweep.lock.ResultsLock).
TRAIN_LOCK = ".adgan-train.lock"
# ``train(save_state=True)``: the state a run continues from (``train(resume=True)``).
TRAIN_STATE = "train_state.pt"
# What a sweep trial's checkpoint holds besides the best detector's own files (detector.json, state.pt):
# what a restarted trial needs to continue.
RUN_STATE_FILES = (TRAIN_STATE, "metrics.jsonl", "config.json")
# A finished trial's outcome, written into its checkpoint by the sweep's driver (adgan.sweep.callback).
FINISHED = "finished.json"
# What a sweep trial's checkpoint holds besides the detector: what a reader of the detector skips.
NOT_DETECTOR_FILES = (*RUN_STATE_FILES, FINISHED)
# In an exported detector's folder: the copy of the plugin file that defines it (adgan export).
PLUGIN_DIR = "plugin"
# A run's own logs, which a sweep trial copies into its Tune trial directory.
RUN_LOGS = ("config.json", "metrics.jsonl", "summary.json")
# Ray Tune's experiment directory inside a sweep's results (results/<sweep>/tune/<trial>/checkpoint_*).
TUNE_EXPERIMENT = "tune"
