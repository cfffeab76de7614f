"""The Space app: upload a seafloor image, see every head's coherent scores as a tree.

``benthicnet-hf app --model DIR_OR_ID`` (or ``spaces/app.py`` on a Hugging Face Space) serves a
Gradio page. For an uploaded image it shows, per trained head:

- the **top path**: the deepest confident node and its ancestors (``{head}_deepest`` of
  ``benthicnet-hf predict``), highlighted in the tree;
- the **tree** of the head's trained nodes (``config.trained_nodes()``; nodes never seen as a
  positive in training are hidden, as ``predict`` never offers them) with their coherent scores
  (``outputs.probabilities``: a child never scores above its parent); branches off the top path are
  folded;
- a **download** of the prediction row, the CSV row ``predict`` writes for the same image.

The row is filled by :func:`benthicnet_hf.cli.fill_prediction_rows`, the code ``predict`` itself
uses (same threshold rules, absence classes, untrained heads), from the probabilities the tree
shows (one forward pass), so the page and the CLI cannot disagree.
The hosted Hub widget cannot run the coherent heads (no custom code); this app can.
"""

from __future__ import annotations

import csv
import html
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TITLE = "BenthicNet: hierarchical seafloor image classification"
#: Colours of the score bars: on the top path, off it.
ON_PATH, OFF_PATH = "#1f77b4", "#c7c7c7"


def predict_image(model: Any, processor: Any, image_path: str | Path) -> tuple[dict[str, str], np.ndarray]:
    """One forward pass: the ``benthicnet-hf predict`` CSV row of one image and its probabilities.

    The row is filled by :func:`benthicnet_hf.cli.fill_prediction_rows`, as ``predict`` fills its
    rows, from the same probabilities the tree shows (one pass: with MC dropout two passes would differ).

    Returns:
        the row (``image`` is the file's name only) and ``(num_nodes,)`` float64 coherent probabilities.

    Raises:
        ValueError: the image cannot be read (the message names it).
    """
    import torch

    from .cli import fill_prediction_rows
    from .data.images import ImageLoadError, load_rgb

    name = Path(image_path).name  # never a server-side path in what users download
    try:
        image = load_rgb(image_path)
    except ImageLoadError as err:
        raise ValueError(f"{name}: {err}") from err
    device = next(model.parameters()).device
    pixel_values = processor([image], return_tensors="pt")["pixel_values"].to(device)
    with torch.no_grad():
        probabilities = model(pixel_values=pixel_values).probabilities
    row: dict[str, str] = {"image": name, "error": ""}
    fill_prediction_rows(model.config, [row], probabilities)
    return row, probabilities[0].double().cpu().numpy()


def visible_nodes(config: Any) -> np.ndarray:
    """``(num_nodes,)`` bool: the nodes the app shows (trained ones; all without training support)."""
    trained = config.trained_nodes()
    n = config.get_hierarchy().num_nodes
    return np.ones(n, dtype=bool) if trained is None else np.asarray(trained, dtype=bool)


def top_path(hierarchy: Any, head: str, deepest: str) -> list[int]:
    """Global indices from the head's root down to ``deepest`` ([] when ``deepest`` is empty)."""
    if not deepest:
        return []
    anc = hierarchy.ancestors_padded[hierarchy.index(head, deepest)]
    anc = anc[anc >= 0]
    return anc[np.argsort(hierarchy.depth[anc], kind="stable")].tolist()


def _node_html(i: int, name: str, score: float, on_path: bool, children: str) -> str:
    colour = ON_PATH if on_path else OFF_PATH
    weight = "bold" if on_path else "normal"
    label = (f'<span class="node-label" style="font-weight:{weight}">{html.escape(name)}</span> '
             f'<span class="node-score" data-node="{i}">{score:.3f}</span> '
             f'<span style="display:inline-block;height:0.6em;width:{100 * score:.0f}px;background:{colour}">'
             "</span>")
    cls = "node on-path" if on_path else "node"
    if not children:
        return f'<li class="{cls}">{label}</li>'
    opened = " open" if on_path else ""
    return f'<li class="{cls}"><details{opened}><summary>{label}</summary><ul>{children}</ul></details></li>'


def head_tree_html(hierarchy: Any, head: str, probs: np.ndarray, visible: np.ndarray, deepest: str) -> str:
    """One head's section: its top path and its tree of visible nodes (HTML).

    Args:
        probs: ``(num_nodes,)`` coherent probabilities.
        visible: ``(num_nodes,)`` bool, the nodes to show.
        deepest: the head's deepest confident node key ("" when none).
    """
    h = hierarchy.head_names.index(head)
    s = hierarchy.head_slice(h)
    keys = hierarchy.heads[h].nodes
    path = top_path(hierarchy, head, deepest)
    on_path = np.zeros(hierarchy.num_nodes, dtype=bool)
    on_path[path] = True
    parent = hierarchy.parent_index  # (N,) first parent; a DAG node is drawn under that one
    parent = np.where((parent >= 0) & visible[np.maximum(parent, 0)], parent, -1)  # hidden parent: drawn as a root
    shown = np.flatnonzero(visible[s]) + s.start
    children: dict[int, list[int]] = {}
    for i in shown[np.argsort(-probs[shown], kind="stable")]:  # siblings by decreasing score
        children.setdefault(int(parent[i]), []).append(int(i))

    def render(i: int) -> str:  # rendering only: a few hundred nodes at most
        inner = "".join(render(c) for c in children.get(i, []))
        return _node_html(i, keys[i - s.start].split(" > ")[-1], float(probs[i]), bool(on_path[i]), inner)

    roots = "".join(render(i) for i in children.get(-1, []))
    if path:
        shown_path = " &gt; ".join(html.escape(keys[i - s.start].split(" > ")[-1]) for i in path)
        summary = f"{shown_path} ({probs[path[-1]]:.3f})"
    else:
        summary = "no confident node"
    return (f'<section class="head" data-head="{html.escape(head)}"><h3>{html.escape(head)}</h3>'
            f'<p class="top-path" data-head="{html.escape(head)}" data-key="{html.escape(deepest)}">'
            f"<b>top path:</b> {summary}</p><ul class=\"tree\">{roots}</ul></section>")


def prediction_html(config: Any, probs: np.ndarray, row: dict[str, str], heads: Sequence[str]) -> str:
    """Every trained head's section (:func:`head_tree_html`) for one image."""
    hierarchy = config.get_hierarchy()
    visible = visible_nodes(config)
    return "".join(head_tree_html(hierarchy, head, probs, visible, row.get(f"{head}_deepest", "")) for head in heads)


def write_row_csv(row: dict[str, str], folder: str | Path) -> Path:
    """The prediction row as a one-row CSV in ``folder`` (columns in the row's order, which is
    ``predict``'s column order)."""
    path = Path(folder) / f"{Path(row['image']).stem}_prediction.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path


def build_app(model_id: str, device: str = "cpu") -> Any:
    """The Gradio ``Blocks`` of the app for a saved model folder or Hub id (not launched)."""
    import gradio as gr

    from .cli import load_model, trained_heads

    model, processor = load_model(model_id, device)
    heads = trained_heads(model.config)
    downloads = tempfile.mkdtemp(prefix="benthicnet_app_")

    def run(image_path: str | None) -> tuple[str, str | None]:
        if not image_path:
            return "<p>Upload an image.</p>", None
        try:
            row, probs = predict_image(model, processor, image_path)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return prediction_html(model.config, probs, row, heads), str(write_row_csv(row, downloads))

    name = Path(model_id).name if Path(model_id).exists() else model_id  # no local path on the page
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nModel: `{name}`. Coherent scores (a child never scores above its parent); "
                    "the deepest confident path is highlighted; nodes without training examples are hidden.")
        with gr.Row():
            with gr.Column(scale=1):
                # PNG, mode kept: the model sees the uploaded pixels, as `predict` does (webp would be lossy)
                image = gr.Image(type="filepath", format="png", image_mode=None, label="seafloor image",
                                 elem_id="image-input")
                button = gr.Button("Predict", variant="primary", elem_id="predict-button")
                download = gr.File(label="prediction row (CSV)", elem_id="prediction-csv")
            with gr.Column(scale=2):
                tree = gr.HTML("<p>Upload an image.</p>", elem_id="prediction-tree")
        image.upload(run, inputs=image, outputs=[tree, download])
        button.click(run, inputs=image, outputs=[tree, download])
    return demo


def launch_app(model_id: str, port: int | None = None, share: bool = False, host: str = "127.0.0.1",
               device: str = "cpu", block: bool = True) -> Any:
    """Build and launch the app; with ``block=False`` return at once (the server runs in a thread)."""
    demo = build_app(model_id, device)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                footer_links=[])
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    """``benthicnet-hf app`` (see its ``--help``): parse the subcommand's options and serve until stopped."""
    import sys

    from .cli import build_parser

    args = build_parser().parse_args(["app", *(sys.argv[1:] if argv is None else argv)])
    launch_app(args.model, port=args.port, share=args.share == "yes", host=args.host, device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
