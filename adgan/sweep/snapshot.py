"""Before ``--resume``: make the checkpoints a killed driver's last Tune snapshot names exist again.

Tune keeps ``num_to_keep`` checkpoints per trial and deletes the oldest the moment a newer one is
registered, while the snapshot of the experiment that names each trial's checkpoints reaches storage
later (it is written and uploaded after the step, the upload in a background thread). A driver killed in
between (a lost head node, ``kill -9``, the machine going down) leaves a snapshot that names a checkpoint
already deleted: restored from it, the trial fails three times ("Could not recover from checkpoint as it
does not exist on storage anymore") and is lost; an older checkpoint it still tracks makes Tune log an
error each time it tries to delete it again.

:func:`restore_named_checkpoints` reads the newest snapshot and, for each trial that will be restored (not
terminated, not errored), puts the missing checkpoints back: the one it resumes from as a copy of the
trial's next newer checkpoint (a later epoch of the same trial; the epochs in between were recorded by the
killed driver and are not recorded twice: ``adgan.sweep.callback``), an older tracked one as an empty
folder for Tune to delete. A trial with no newer checkpoint is left as it is.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from adgan.errors import DataError
from adgan.sweep.storage import Location

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
COPYING = ".adgan-copying"  # in a checkpoint folder while it is being put back
_STATE = re.compile(r"^experiment_state-.*\.json$")


def _named(meta: Any) -> tuple[str | None, list[str]]:
    """The checkpoint folder names a trial's restored run metadata tracks: the one it resumes from, and
    the others it keeps (to delete later)."""
    def name(result: Any) -> str:
        return str(result.checkpoint.path).rstrip("/").rsplit("/", 1)[-1]

    manager = meta.checkpoint_manager
    latest = manager.latest_checkpoint_result
    kept = [name(r) for r in manager.best_checkpoint_results if r.checkpoint is not None]
    return (name(latest) if latest is not None and latest.checkpoint is not None else None), kept


def restore_named_checkpoints(experiment: Location) -> list[str]:
    """Put back the checkpoints the newest Tune snapshot in the directory ``experiment`` names but storage
    lacks; return a line per trial repaired, for the log.

    Anything unexpected in the snapshot (another Ray's format) leaves everything as it is: Tune then
    restores as it would have."""
    from ray.tune.experiment.trial import Trial, _TrainingRunMetadata

    states = [n for n in experiment.list_files() if _STATE.match(n)]  # (sorted: the newest last)
    if not states:
        return []
    try:
        state = json.loads(experiment.child(states[-1]).read_text())
        trials = [(Trial.from_json_state(t, stub=True), _TrainingRunMetadata.from_json_state(m))
                  for t, m in state["trial_data"]]
    except Exception as exc:  # noqa: BLE001 (a snapshot this code cannot read: Tune's restore decides)
        log.debug("not checking the snapshot's checkpoints: %s", exc)
        return []
    repaired = [_repair_trial(experiment.child(trial.storage.trial_dir_name), trial.trial_id, meta)
                for trial, meta in trials if trial.status not in (Trial.TERMINATED, Trial.ERROR)]
    return [line for line in repaired if line]


def _repair_trial(trial_dir: Location, trial_id: str, meta: Any) -> str | None:
    """The repair of :func:`restore_named_checkpoints` for one trial to be restored; its log line."""
    try:
        latest, kept = _named(meta)
    except AttributeError as exc:  # (another Ray's checkpoint manager)
        log.debug("not checking the checkpoints of trial %s: %s", trial_id, exc)
        return None
    # (the folders holding files: an object store has no folders of its own)
    present = {name.split("/", 1)[0] for name, _ in trial_dir.files()}
    for name in kept:
        if name != latest and name not in present:
            # (only for Tune to delete: nothing resumes from it)
            trial_dir.fs.create_dir(trial_dir.child(name).path)
    match = _CHECKPOINT.match(latest or "")
    if match is None:
        return None
    target = trial_dir.child(str(latest))
    if latest in present:
        if COPYING not in target.list_files():
            return None
        target.delete_dir()  # (a copy of an earlier --resume, cut short)
    on_disk = sorted(int(m.group(1)) for n in present if (m := _CHECKPOINT.match(n)))
    newer = [i for i in on_disk if i > int(match.group(1))]
    if not newer:
        return None
    source = f"checkpoint_{newer[0]:06d}"
    try:
        # COPYING lies in the copy until its last file is there: a copy cut short (a store's error, a kill)
        # is made again by the next --resume instead of being restored from.
        target.child(COPYING).write_text(source)
        trial_dir.child(source).copy_to(target)
        target.child(COPYING).delete()
    except OSError as exc:
        raise DataError(f"{trial_dir.uri}: could not put back {latest}, which Tune's snapshot names, as a "
                        f"copy of {source} ({exc}); run the same --resume again") from None
    return (f"trial {trial_id}: its snapshot named {latest}, deleted after it was taken; resuming from "
            f"{source}")
