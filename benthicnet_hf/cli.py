"""The ``benthicnet-hf`` command line.

``benthicnet-hf predict --model DIR_OR_ID IMAGES_OR_FOLDER... --output predictions.csv`` writes one
CSV row per image with, per head, the predicted CATAMI paths (``{head}_paths``, ``"; "`` between
several), the deepest confident node (``{head}_deepest``) and its score (``{head}_score``). An
image that cannot be read gets a row with its ``error`` (and is named on stderr): never skipped.
The exit status is 1 when any image failed, 0 otherwise.

Ensembles: ``--uncertainty`` adds ``{head}_uncertainty``, the ensemble's per-node uncertainty
(``--uncertainty_mode``, default the model's ``config.uncertainty``, e.g. bBMA) of the
``{head}_deepest`` node (empty when the head predicts nothing). It needs a model with
``ensemble_size > 1`` or MC dropout: ``--mc_dropout N`` runs the heads ``N`` times with dropout on
(any model with head dropout; the passes are seeded by ``--seed``). Scores are then the members'
mean coherent probabilities.

``--table labels.csv`` predicts the images of a label table instead and carries its metadata
columns (site, latitude, longitude, date, depth ...) into the rows; ``--output x.parquet`` writes
Parquet. Heads with WoRMS ids (biota) get ``{head}_aphia_id``, the AphiaID of ``{head}_deepest``.

``benthicnet-hf import --format squidle|biigle|coralnet EXPORT.csv --mapping MAP.csv --output
labels.csv`` turns annotation-platform exports into a label table (``docs/imports.md``).

New subcommands register in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")


def collect_images(inputs: Sequence[str]) -> list[Path]:
    """Image files named or found (recursively, sorted) in the given folders.

    Raises:
        FileNotFoundError: an input that does not exist, or folders without any image.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{item}: no such image file or folder")
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {list(inputs)}")
    return files


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def load_model(model_id: str, device: str) -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and image processor from a folder or a Hub id."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from . import modeling_benthicnet  # noqa: F401  (registers the Auto classes: no remote code needed)

    check_model_source(model_id)
    try:
        model = AutoModelForImageClassification.from_pretrained(model_id)
        processor = AutoImageProcessor.from_pretrained(model_id)
    except OSError as err:
        if Path(model_id).expanduser().exists():
            raise
        # neither a folder nor loadable as a Hub id: say "no such folder" first, the Hub second
        raise FileNotFoundError(f"--model {model_id}: no such folder ({Path(model_id).expanduser().absolute()}), "
                                f"and no Hub model of that id could be loaded: {str(err).splitlines()[0]}") from err
    return model.to(device).eval(), processor


#: Files accelerate's ``save_state`` writes into a training checkpoint (``checkpoints/step_*``).
TRAINING_STATE_FILES = ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "training_state.json")


def _looks_like_path(model_id: str) -> bool:
    """Whether ``model_id`` can only be a local path (a Hub id is ``name`` or ``owner/name``)."""
    return (Path(model_id).expanduser().is_absolute() or model_id.startswith((".", "~")) or "\\" in model_id
            or model_id.endswith("/") or model_id.count("/") > 1)


def _run_models(run_dir: Path) -> list[str]:
    """The saved-model folders (``final/``, ``best/``) of a training output folder that exist."""
    return [str(run_dir / name) for name in ("final", "best") if (run_dir / name / "config.json").is_file()]


def check_model_source(model_id: str) -> None:
    """Clear errors for a ``--model`` that is not a saved model, before transformers' Hub messages.

    A missing path-like argument is "no such folder"; a folder without ``config.json`` is named as
    what it is: a training checkpoint (``checkpoints/step_*``, accelerate state for resuming), the
    ``checkpoints/`` folder, a training output folder, or something else, with the ``final/`` or
    ``best/`` folder to use instead.
    """
    path = Path(model_id).expanduser()
    if not path.exists():
        if _looks_like_path(model_id):
            parent = next((p for p in path.absolute().parents if p.exists()), None)
            raise FileNotFoundError(f"--model {model_id}: no such folder ({path.absolute()}; the nearest existing "
                                    f"parent is {parent})")
        return  # maybe a Hub id: transformers decides
    if not path.is_dir():
        raise ValueError(f"--model {model_id}: a file, not a model folder (expected a folder with config.json and "
                         "model.safetensors written by save_pretrained, e.g. OUTPUT_DIR/final)")
    if (path / "config.json").is_file():
        return
    names = {p.name for p in path.iterdir()}
    if any(n.startswith("step_") and (path / n).is_dir() for n in names):  # the checkpoints/ folder
        run = path.parent
        what = "the training checkpoints folder"
    elif names & set(TRAINING_STATE_FILES) or path.name.startswith("step_"):
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        what = "a training checkpoint (the accelerate state that --resume_from_checkpoint reads)"
    elif _run_models(path):
        run, what = path, "a training output folder"
    else:
        shown = sorted(names)[:10]
        raise ValueError(f"--model {model_id}: not a saved model: no config.json in the folder (it holds {shown}); "
                         "expected a folder written by save_pretrained, e.g. OUTPUT_DIR/final")
    models = _run_models(run)
    use = (f"use {' or '.join(models)}" if models else
           f"use the run's final/ or best/ folder (none in {run} yet: the run has not finished or saved a best model)")
    raise ValueError(f"--model {model_id}: {what}, not a saved model; {use}")


def trained_heads(config: Any) -> list[str]:
    """Head names with at least one trained node (all heads when the config has no training support);
    the others are named on stderr, since their columns are left out."""
    from .prediction import untrained_heads

    hierarchy = config.get_hierarchy()
    trained = config.trained_nodes()
    if trained is None:
        return hierarchy.head_names
    untrained = untrained_heads(hierarchy, trained)
    keep = [name for name, skip in zip(hierarchy.head_names, untrained) if not skip]
    skipped = [name for name, skip in zip(hierarchy.head_names, untrained) if skip]
    if skipped:
        print(f"benthicnet-hf predict: head(s) {skipped} had no training labels: not predicted", file=sys.stderr)
    return keep


def prediction_columns(head_names: Sequence[str], uncertainty: bool = False,
                       aphia_heads: Sequence[str] = ()) -> list[str]:
    """``image``, ``error``, then per head paths/deepest/score (+ uncertainty, + ``{head}_aphia_id``:
    the WoRMS AphiaID of the deepest node, for the heads in ``aphia_heads``)."""
    cols = ["image", "error"]
    for head in head_names:
        cols += [f"{head}_paths", f"{head}_deepest", f"{head}_score"]
        if uncertainty:
            cols.append(f"{head}_uncertainty")
        if head in aphia_heads:
            cols.append(f"{head}_aphia_id")
    return cols


def configure_ensemble(model: Any, uncertainty: bool, mc_dropout: int | None = None,
                       mode: str | None = None) -> None:
    """Apply ``--mc_dropout`` / ``--uncertainty`` / ``--uncertainty_mode`` to a loaded model (eval mode).

    Raises:
        ValueError: uncertainty asked of a model without ensemble members (no ``ensemble_size > 1``,
            no MC dropout), an unknown mode, or MC dropout on heads without dropout.
    """
    from .configuration_benthicnet import canonical_uncertainty

    if mc_dropout is not None:
        model.set_mc_dropout(mc_dropout)
    if mode is not None:
        model.config.uncertainty = canonical_uncertainty(mode)
    if uncertainty and not model.has_members():
        raise ValueError("--uncertainty needs an ensemble: the model has ensemble_size=1 and no MC dropout; "
                         "add --mc_dropout N (N dropout passes) or use a model trained with --ensemble_size K")


def fill_prediction_rows(config: Any, rows: Sequence[dict[str, Any]], probabilities: Any,
                         threshold: float | None = None, uncertainty: Any = None) -> None:
    """Add each trained head's ``paths`` / ``deepest`` / ``score`` (+ ``aphia_id``, ``uncertainty``) to ``rows``.

    Args:
        config: the model's config (hierarchy, trained nodes, per-node thresholds).
        rows: one dict per image, filled in place.
        probabilities: ``(len(rows), num_nodes)`` coherent probabilities.
        threshold: None: ``config.node_thresholds`` when set, else 0.5.
        uncertainty: ``(len(rows), num_nodes)`` per-node uncertainty, or None for no such columns.
    """
    from .aphia import aphia_id, heads_with_aphia_ids
    from .prediction import predict_paths_for_config

    hierarchy = config.get_hierarchy()
    aphia_heads = set(heads_with_aphia_ids(hierarchy.head_names))
    unc = None if uncertainty is None else uncertainty.float().cpu().numpy()
    for i, (row, pred) in enumerate(zip(rows, predict_paths_for_config(config, probabilities, threshold))):
        for head, p in pred.items():
            if p["untrained"]:  # no training label: no column, nothing guessed
                continue
            row[f"{head}_paths"] = "; ".join(p["paths"])
            row[f"{head}_deepest"] = p["deepest"] or ""
            row[f"{head}_score"] = "" if p["score"] is None else f"{p['score']:.6f}"
            if head in aphia_heads:  # WoRMS id of the deepest node, where the shipped table has one
                aphia = aphia_id(head, p["deepest"])
                row[f"{head}_aphia_id"] = "" if aphia is None else str(aphia)
            if unc is not None:
                deepest = p["deepest"]
                row[f"{head}_uncertainty"] = "" if deepest is None else f"{unc[i, hierarchy.index(head, deepest)]:.6f}"


def predict_images(model: Any, processor: Any, files: Sequence[Path], batch_size: int = 32,
                   threshold: float | None = None, progress: bool = True, uncertainty: bool = False
                   ) -> Iterator[dict[str, Any]]:
    """Yield one CSV row (dict) per file, in order; unreadable files get an ``error`` row.

    ``threshold`` None: the model's per-node ``config.node_thresholds`` when it has them, else 0.5.
    With ``uncertainty``, each head also gets ``{head}_uncertainty``: the model output's per-node
    ``uncertainty`` of the ``{head}_deepest`` node ("" when the head predicts nothing).
    """
    import torch
    from tqdm.auto import tqdm

    from .data.images import ImageLoadError, load_rgb

    device = next(model.parameters()).device
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress)
    for chunk in _chunks(files, batch_size):
        images, ok, rows = [], [], []
        for path in chunk:
            row: dict[str, Any] = {"image": str(path), "error": ""}
            try:
                images.append(load_rgb(path))
                ok.append(row)
            except ImageLoadError as err:
                row["error"] = str(err)
                print(f"benthicnet-hf predict: cannot read {path}: {err}", file=sys.stderr)
            rows.append(row)
        if images:
            pixel_values = processor(images, return_tensors="pt")["pixel_values"].to(device)
            with torch.no_grad():
                out = model(pixel_values=pixel_values)
            if uncertainty and out.uncertainty is None:
                raise ValueError("the model returned no uncertainty (ensemble_size=1 without MC dropout)")
            fill_prediction_rows(model.config, ok, out.probabilities, threshold,
                                 out.uncertainty if uncertainty else None)
        bar.update(len(chunk))
        yield from rows
    bar.close()


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from .aphia import heads_with_aphia_ids
    from .data.prediction_table import join_metadata, table_images, write_predictions

    if bool(args.images) == bool(args.table):
        raise ValueError("give image files/folders or --table LABELS.csv (one of the two)")
    files = collect_images(args.images) if args.images else []
    model, processor = load_model(args.model, args.device)
    configure_ensemble(model, args.uncertainty, args.mc_dropout, args.uncertainty_mode)
    torch.manual_seed(args.seed)  # MC dropout masks
    meta = None
    if args.table:  # the table's metadata columns travel with each prediction row
        files, meta = table_images(args.table, model.config.get_hierarchy().head_names, args.image_root,
                                   args.image_column)
    heads = trained_heads(model.config)
    columns = prediction_columns(heads, uncertainty=args.uncertainty, aphia_heads=heads_with_aphia_ids(heads))
    rows = list(predict_images(model, processor, files, args.batch_size, args.threshold,
                               progress=not args.no_progress, uncertainty=args.uncertainty))
    failed = sum(bool(row["error"]) for row in rows)
    frame = pd.DataFrame(rows, columns=columns) if meta is None else join_metadata(meta, rows, columns)
    out = write_predictions(frame, args.output)
    print(f"wrote {len(files)} rows to {out}" + (f"; {failed} image(s) could not be read (see the "
                                                  f"'error' column)" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def cmd_import(args: argparse.Namespace) -> int:
    from .data.imports import UnmappedLabelError, import_exports, write_table, write_unmapped_template
    from .hierarchy import Hierarchy

    both = sorted(set(args.exhaustive) & set(args.non_exhaustive))
    unknown = sorted(set(args.exhaustive + args.non_exhaustive) - set(Hierarchy.catami().head_names))
    if both or unknown:
        raise ValueError(f"--exhaustive/--non_exhaustive: head(s) {both} given as both, unknown head(s) {unknown}")
    exhaustive = {h: True for h in args.exhaustive} | {h: False for h in args.non_exhaustive}
    try:
        table, report = import_exports(args.format, args.exports, args.mapping, exhaustive=exhaustive,
                                       on_unmapped=args.on_unmapped, labelset=args.labelset,
                                       label_column=args.label_column, image_column=args.image_column,
                                       site_column=args.site_column, source=args.source)
    except UnmappedLabelError as err:
        if args.unmapped_template:
            print(f"unmapped labels written to {write_unmapped_template(err.unmapped, args.unmapped_template)}",
                  file=sys.stderr)
        raise
    if report.unmapped and args.unmapped_template:
        write_unmapped_template(report.unmapped, args.unmapped_template)
    print(report.summary(), file=sys.stderr)
    print(f"wrote {len(table)} image rows to {write_table(table, args.output)}", file=sys.stderr)
    return 0


def app_argv(args: argparse.Namespace) -> list[str]:
    """The ``app`` subcommand's options as command-line words again."""
    argv = ["--model", args.model, "--host", args.host, "--share", args.share, "--device", args.device]
    return argv + (["--port", str(args.port)] if args.port is not None else [])


def cmd_app(args: argparse.Namespace) -> int:
    import runpy

    # benthicnet_hf.app builds on this module (predict's code path), so it runs as a program here
    # rather than being imported back (no import cycle)
    sys.argv = ["benthicnet-hf app", *app_argv(args)]
    runpy.run_module("benthicnet_hf.app", run_name="__main__", alter_sys=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benthicnet-hf", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="predict CATAMI paths for images, one CSV row per image")
    p.add_argument("--model", required=True, help="saved model folder or Hub id")
    p.add_argument("images", nargs="*", help="image files and/or folders (searched recursively)")
    p.add_argument("--table", default=None, metavar="LABELS.csv",
                   help="predict the images of a table instead; its non-label columns (site, latitude, longitude, "
                        "date, depth ...) are carried into the output")
    p.add_argument("--image_root", default=None, help="with --table: folder of its image paths (default: its folder)")
    p.add_argument("--image_column", default="image", help="with --table: the column of image paths")
    p.add_argument("--output", default="predictions.csv",
                   help="CSV to write, or Parquet when it ends in .parquet (default predictions.csv)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--threshold", type=float, default=None,
                   help="a node is predicted when its score > this, for every node (default: the model's per-node "
                        "thresholds tuned on its validation split, config.node_thresholds; else 0.5)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--uncertainty", action="store_true",
                   help="add {head}_uncertainty (ensembles / MC dropout): the uncertainty of the deepest "
                        "predicted node")
    p.add_argument("--uncertainty_mode", default=None, metavar="MODE",
                   help="bma | predictive | aleatoric | epistemic | gmu (default: the model's config.uncertainty)")
    p.add_argument("--mc_dropout", type=int, default=None, metavar="N",
                   help="MC dropout: average N passes with the heads' dropout on (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the MC dropout masks")
    p.set_defaults(func=cmd_predict)
    i = sub.add_parser("import", help="annotation-platform exports (SQUIDLE+, BIIGLE, CoralNet) → a label table")
    i.add_argument("exports", nargs="+", help="export CSV file(s) of one platform")
    i.add_argument("--format", required=True, choices=("squidle", "biigle", "coralnet"))
    i.add_argument("--mapping", required=True, help="CSV 'label,catami': platform label → CATAMI path(s) or IGNORE")
    i.add_argument("--output", required=True, help="table to write (CSV, or Parquet for .parquet)")
    i.add_argument("--labelset", default=None, help="CoralNet: the source's labelset export (Label ID,Short Code)")
    i.add_argument("--on_unmapped", choices=("error", "skip"), default="error",
                   help="labels not in the mapping: error (list them all, with counts) or skip their points (listed)")
    i.add_argument("--unmapped_template", default=None, metavar="CSV",
                   help="write the unmapped labels with their counts as a mapping file to fill in")
    i.add_argument("--exhaustive", action="append", default=[], metavar="HEAD",
                   help="a head whose unannotated nodes are known absent (default: substrate, relief, bedforms)")
    i.add_argument("--non_exhaustive", action="append", default=[], metavar="HEAD",
                   help="a head whose unannotated nodes are unknown (default: biota, colour)")
    i.add_argument("--label_column", default=None, help="export column of the label (default per format)")
    i.add_argument("--image_column", default=None, help="export column of the image file (default per format)")
    i.add_argument("--site_column", default=None, help="export column of the site (default per format)")
    i.add_argument("--source", default=None, help="the table's dataset value (default per format)")
    i.set_defaults(func=cmd_import)
    a = sub.add_parser("app", help="launch the Gradio app (the Space): upload an image, see each head's tree")
    a.add_argument("--model", required=True, help="saved model folder or Hub id")
    a.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: reachable from the network)")
    a.add_argument("--share", choices=("no", "yes"), default="no", help="a public gradio.live link (needs network)")
    a.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    a.set_defaults(func=cmd_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"benthicnet-hf {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
