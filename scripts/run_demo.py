"""The main job on the bundled synthetic demo data, end to end, on a CPU in a few minutes.

    python scripts/run_demo.py [--output_dir runs/demo] [--epochs 10] [--skip_ssl]

1. builds the demo dataset (deterministic synthetic seafloor images with CATAMI labels);
2. pre-trains the encoder briefly with SimSiam (``train_scripts/pretrain.py``) — a smoke run of the
   self-supervised stage, a handful of steps (skipped with a note if it fails);
3. fine-tunes it with ``accelerate launch train_scripts/finetune.py`` and evaluates on the test
   split: the metric table with the label-prior baseline beside it;
4. reloads the saved model with ``from_pretrained``, runs ``pipeline("image-classification")`` and
   ``benthicnet-hf predict`` on demo images.

Every step prints the command it runs, so each can be repeated on real data.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADLINE = ("overall/hml_ap", "overall/ap_micro", "overall/ap_macro", "overall/f1_micro", "overall/sample_ap")
PER_HEAD = ("hml_ap", "hml_f1", "singular_f1")  # the BenthicNet paper's metrics, per head


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=REPO, **kwargs)


def accelerate_launch(script: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / script), *args]


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("benthicnet-hf")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "benthicnet_hf.cli"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/demo")
    parser.add_argument("--encoder", default="test_resnet")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num_images", type=int, default=400)
    parser.add_argument("--ssl_steps", type=int, default=10)
    parser.add_argument("--skip_ssl", action="store_true")
    args = parser.parse_args(argv)
    start = time.time()
    out = (REPO / args.output_dir).resolve()
    data_dir, ssl_dir, run_dir = out / "data", out / "ssl", out / "finetune"

    print("== 1. demo dataset")
    from benthicnet_hf.data.demo import make_demo_dataset

    if not (data_dir / "labels.csv").exists():
        make_demo_dataset(data_dir, num_images=args.num_images, image_size=96, seed=0)
    print(f"{args.num_images} images and labels.csv in {data_dir}")

    print("\n== 2. self-supervised pre-training (SimSiam, a smoke run)")
    encoder_flags: list[str] = []
    if args.skip_ssl:
        print("skipped (--skip_ssl): the encoder starts from random weights")
    else:
        ssl = run(accelerate_launch("train_scripts/pretrain.py", [
            "--train_data", str(data_dir / "images"), "--method", "simsiam", "--encoder", args.encoder,
            "--image_size", str(args.image_size), "--batch_size", "32", "--max_steps", str(args.ssl_steps),
            "--output_dir", str(ssl_dir), "--overwrite_output_dir", "--report_to", "none", "--num_workers", "0"]))
        if ssl.returncode == 0 and (ssl_dir / "encoder.safetensors").exists():
            encoder_flags = ["--encoder_checkpoint", str(ssl_dir)]
        else:
            print(f"NOTE: pre-training failed (exit {ssl.returncode}); fine-tuning from random weights instead")

    print("\n== 3. fine-tune and evaluate")
    ft = run(accelerate_launch("train_scripts/finetune.py", [
        "--demo", "--data_dir", str(data_dir), "--output_dir", str(run_dir), "--overwrite_output_dir",
        "--encoder", args.encoder,
        *encoder_flags, "--image_size", str(args.image_size), "--num_train_epochs", str(args.epochs),
        "--per_device_train_batch_size", "32", "--learning_rate", "1e-3", "--head_learning_rate", "1e-2",
        "--weight_decay", "0.05",
        "--warmup_epochs", "1", "--head_hidden_dim", "0", "--head_dropout", "0.2",
        "--checkpointing_steps", "50", "--cache_dir", str(out / "cache")]))
    if ft.returncode != 0:
        print(f"fine-tuning failed (exit {ft.returncode})", file=sys.stderr)
        return ft.returncode
    report = json.loads((run_dir / "test_metrics.json").read_text())
    print(f"\nheadline test metrics ({report['eval_count']['test']} test images), model vs label prior:")
    heads = sorted({k.split("/")[0] for k in report["test"]} - {"overall"})
    for key in (*HEADLINE, *(f"{h}/{m}" for h in heads for m in PER_HEAD)):
        model, prior = report["test"].get(key), report["baseline"].get(key)
        if model is None or prior is None:
            continue
        if model != model:  # NaN: not evaluable (see test_metrics.txt for why)
            print(f"  {key:<24} not evaluable")
            continue
        print(f"  {key:<24} {model:.3f}   prior {prior:.3f}   {'+' if model >= prior else ''}{model - prior:.3f}")

    print("\n== 4. reload, pipeline, benthicnet-hf predict")
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    import benthicnet_hf.modeling_benthicnet  # noqa: F401  (registers the Auto classes)

    final = run_dir / "final"
    model = AutoModelForImageClassification.from_pretrained(final)
    print(f"reloaded {type(model).__name__} from {final}: {model.config.num_labels} nodes")
    sample_dir = sorted((data_dir / "images").iterdir())[-1]
    sample = sorted(sample_dir.glob("*.png"))[0]
    pipe = pipeline("image-classification", model=str(final), trust_remote_code=True)
    print(f"pipeline on {sample.name} (coherent scores, top 5):")
    for pred in pipe(Image.open(sample), top_k=5):
        print(f"  {pred['score']:.3f}  {pred['label']}")
    predictions = out / "predictions.csv"
    rc = run([*cli(), "predict", "--model", str(final), str(sample_dir), "--output", str(predictions)]).returncode
    rows = list(csv.DictReader(predictions.open()))
    print(f"{len(rows)} rows in {predictions} (exit {rc}); first image:")
    for head in model.config.get_hierarchy().head_names:
        if f"{head}_deepest" not in rows[0]:
            print(f"  {head:<10} (no training labels: not predicted)")
            continue
        print(f"  {head:<10} {rows[0][f'{head}_deepest'] or '-'}  ({rows[0][f'{head}_score'] or '-'})")
    print(f"\ndone in {time.time() - start:.0f} s. Model: {final}; widget export: {run_dir / 'widget'}  (push with "
          "--push_to_hub --hub_model_id ORG/NAME --hub_widget_model_id ORG/NAME-widget)")
    print(f"see it in a browser: {shlex.join([*cli(), 'app', '--model', str(final)])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
