"""A training run owns its output folder, and a resumed run is the same run.

Shared by fine-tuning, self-supervised pre-training (``ssl.trainer``) and labelled contrastive
pre-training (``contrastive.train``), each through :func:`start_run` with its own artefacts and
allow-list. Checked at start-up, before any data is loaded or any weight is built:

- **Ownership** (:func:`claim_output_dir`): a fresh run refuses an ``output_dir`` that already holds
  another run's artefacts (fine-tuning: :data:`RUN_ARTEFACTS`, step checkpoints, ``best/``,
  ``final/``, test report), unless ``--overwrite_output_dir`` is given, which removes exactly those
  artefacts first. A run resumed in its own folder must resume that folder's newest checkpoint:
  resuming an older one would leave newer checkpoints that ``latest`` and ``--save_total_limit``
  would mix into the new run (an older checkpoint can start a branch in a new, empty folder). A *file* named like one of the run's folders (``best``, ``checkpoints``, ``final``)
  is refused at once, not after the first epoch.
- **Same settings** (:func:`refuse_changed_settings`): every checkpoint carries the run's arguments
  (``run_args.json``, the loop's parsed argument dataclass as JSON); a resume refuses any
  difference outside the loop's allow-list (:data:`RESUME_HARMLESS` for fine-tuning), listing each
  flag with its old and new value.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Collection, Mapping

from .checkpointing import CHECKPOINTS, RUN_ARGS_FILE, find_checkpoint, list_checkpoints

logger = logging.getLogger(__name__)

#: Folders of a fine-tuning run (a plain file with one of these names blocks the run).
RUN_FOLDERS = (CHECKPOINTS, "best", "final")
#: What a fine-tuning run writes into ``output_dir``; another run's copies are refused or, with
#: ``--overwrite_output_dir``, removed (the demo data and tracker logs are not run results).
RUN_ARTEFACTS = RUN_FOLDERS + ("best.tmp", "final.tmp", "test_metrics.json", "test_metrics.txt",
                                "per_node_metrics.csv")  # loop.PER_NODE_CSV

#: THE allow-list: fine-tuning flags that may differ between a run and its resumption. They change
#: where things are written, what is logged or uploaded, how often state is saved and how fast data
#: is read, never the weights, the data order or the metrics. Everything else must match.
RESUME_HARMLESS = frozenset({
    "output_dir", "resume_from_checkpoint", "overwrite_output_dir",  # where / how to start
    "report_to", "logging_steps",  # logging
    "checkpointing_steps", "save_total_limit", "stop_after_steps",  # save cadence
    "push_to_hub", "hub_model_id", "hub_private", "dataset_name",  # publishing / model card
    "cache_dir", "dataloader_num_workers", "preprocessing_num_workers", "per_device_eval_batch_size",  # speed only
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
})


def check_run_folders(output_dir: str | Path, folders: Collection[str] = RUN_FOLDERS) -> None:
    """Refuse a plain file where the run needs one of its folders.

    Raises:
        NotADirectoryError: naming the file.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output_dir {out} is a file, not a folder")
    for name in folders:
        path = out / name
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file, but the run writes its {name}/ folder there: "
                                     "move or delete it, or choose another --output_dir")


def existing_artefacts(output_dir: str | Path, artefacts: Collection[str] = RUN_ARTEFACTS,
                       folders: Collection[str] = RUN_FOLDERS) -> list[Path]:
    """The run artefacts present in ``output_dir``. An empty ``checkpoints/`` does not count, nor
    a plain file with a folder's name (no run wrote it: :func:`check_run_folders` refuses it)."""
    found = []
    for name in artefacts:
        path = Path(output_dir) / name
        if name == CHECKPOINTS:
            if path.is_dir() and any(path.iterdir()):
                found.append(path)
        elif path.is_dir() if name in folders else path.exists():
            found.append(path)
    return found


def clear_artefacts(output_dir: str | Path, artefacts: Collection[str] = RUN_ARTEFACTS,
                    folders: Collection[str] = RUN_FOLDERS) -> list[Path]:
    """Remove the previous run's artefacts (``--overwrite_output_dir``); returns what was removed."""
    removed = existing_artefacts(output_dir, artefacts, folders)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def claim_output_dir(output_dir: str | Path, resume: Path | None, overwrite: bool,
                     artefacts: Collection[str] = RUN_ARTEFACTS,
                     folders: Collection[str] = RUN_FOLDERS) -> None:
    """Check (and with ``overwrite`` clean) ``output_dir`` for a run resuming ``resume`` (or fresh).

    Main process only (it may delete files).

    Raises:
        FileExistsError: a fresh run in a folder holding another run's artefacts (listed); a resume
            from a checkpoint of ``output_dir`` that is not its newest, or from another folder's
            checkpoint into a folder that already holds a run.
        NotADirectoryError: a file where the run needs a folder.
        ValueError: ``overwrite`` together with ``resume``.
    """
    out = Path(output_dir)
    if resume is not None:
        if overwrite:
            raise ValueError("--overwrite_output_dir deletes the checkpoints that --resume_from_checkpoint "
                             "would continue: give one of them")
        check_run_folders(out, folders)
        own = resume.resolve().parent.parent == out.resolve()
        if own:  # a checkpoint of another folder starts a branch there; this one is left as it is
            _check_newest(resume)
        found = existing_artefacts(out, artefacts, folders)
        if found and not own:
            raise FileExistsError(
                f"--resume_from_checkpoint {resume} belongs to another folder, but --output_dir {out} already "
                f"holds a run ({', '.join(p.name for p in found)}): resume into an empty --output_dir")
        return
    if overwrite:
        for path in clear_artefacts(out, artefacts, folders):
            logger.warning("--overwrite_output_dir: removed %s of the previous run", path)
    check_run_folders(out, folders)
    found = existing_artefacts(out, artefacts, folders)
    if found:
        raise FileExistsError(
            f"--output_dir {out} already holds another run ({', '.join(p.name for p in found)}): resume it "
            "with --resume_from_checkpoint latest, replace it with --overwrite_output_dir, or choose a new folder")


def _check_newest(path: Path) -> None:
    """Refuse resuming a checkpoint with newer ones beside it (they would outlive or mix into the run)."""
    siblings = list_checkpoints(path.parent.parent) if path.parent.name == CHECKPOINTS else []
    newer = siblings[siblings.index(path) + 1:] if path in siblings else []
    if newer:
        raise FileExistsError(
            f"--resume_from_checkpoint {path}: newer checkpoints exist ({', '.join(p.name for p in newer)}); "
            "resuming an older one would mix two runs in one folder. Delete the newer checkpoints "
            "first, or copy this one into a new --output_dir")


def args_snapshot(args: Any) -> dict[str, Any]:
    """The run's arguments (a dataclass) as stored in a checkpoint: JSON round trip, tuples → lists."""
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(args)))


def read_run_args(checkpoint: str | Path) -> dict[str, Any] | None:
    """The arguments stored in ``checkpoint``, or None for a checkpoint older than this rule."""
    path = Path(checkpoint) / RUN_ARGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); the checkpoint's settings cannot be checked") from err


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any],
                     harmless: Collection[str] = RESUME_HARMLESS) -> list[tuple[str, Any, Any]]:
    """``(flag, old, new)`` for every setting outside ``harmless`` that differs, sorted by flag.

    A flag present on one side only (another version of the code) counts as a difference.
    """
    missing = "(absent)"
    return [(key, saved.get(key, missing), current.get(key, missing))
            for key in sorted(set(saved) | set(current))
            if key not in harmless and saved.get(key, missing) != current.get(key, missing)]


def refuse_changed_settings(checkpoint: str | Path, saved: Mapping[str, Any] | None, current: Mapping[str, Any],
                            harmless: Collection[str] = RESUME_HARMLESS) -> None:
    """Raise when resuming ``checkpoint`` (saved settings ``saved``) with ``current`` changes the run.

    Raises:
        ValueError: listing each differing flag with the checkpoint's and the given value.
    """
    if saved is None:
        logger.warning("%s records no settings (saved by an older version): they cannot be checked", checkpoint)
        return
    diffs = changed_settings(saved, current, harmless)
    if diffs:
        lines = "\n".join(f"  --{k}: {old!r} in the checkpoint, {new!r} now" for k, old, new in diffs)
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint}: these settings differ from the run being resumed\n"
            f"{lines}\nResume with the original values, or start a new run in a new --output_dir "
            f"(flags that may change on resume: {', '.join(sorted(harmless))})")


def start_run(accelerator: Any, args: Any, artefacts: Collection[str] = RUN_ARTEFACTS,
              folders: Collection[str] = RUN_FOLDERS, harmless: Collection[str] = RESUME_HARMLESS,
              missing_ok: bool = False) -> Path | None:
    """Start-up of every training loop: resolve ``args.resume_from_checkpoint``, claim
    ``args.output_dir`` (main process; its errors reach every process) and check the settings of a
    resume against ``harmless``. Defaults: fine-tuning's; each loop passes its own ``artefacts``,
    ``folders`` and allow-list. ``missing_ok``: ``latest`` with no checkpoint starts fresh.

    ``args`` is the loop's argument dataclass (``output_dir``, ``resume_from_checkpoint``,
    ``overwrite_output_dir``). Returns the checkpoint to resume (None: fresh run).
    """
    from .main_process import run_on_main

    resume = (find_checkpoint(args.output_dir, args.resume_from_checkpoint, missing_ok)
              if args.resume_from_checkpoint else None)

    def claim() -> None:
        claim_output_dir(args.output_dir, resume, args.overwrite_output_dir, artefacts, folders)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)

    run_on_main(accelerator, f"checking --output_dir {args.output_dir}", claim)
    if resume is not None:  # read-only: every process reaches the same verdict
        refuse_changed_settings(resume, read_run_args(resume), args_snapshot(args), harmless)
    return resume
