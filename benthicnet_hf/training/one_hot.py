"""One-hot probes: a single-label (softmax, cross-entropy) task cut out of one head of the hierarchy.

The BenthicNet paper (Xu et al., arXiv 2409.06618) also evaluates encoders on one-hot subsets,
e.g. ``substrate_depth_2``: the images whose substrate label at the depth of Boulders / Cobbles /
Rock / Pebble-gravel / Sand-mud is known and single, classified into those five classes (the
German Bank 2010 set has five such substrate classes too). The authors count depth from 0 at the
root ("Substrate"); this library counts from 1, so their depth 2 is our ``substrate:3``.

A task ``HEAD:DEPTH`` keeps, in every split, the rows with **exactly one known positive** among the
head's nodes at ``DEPTH`` (a deeper label counts as its ancestor at ``DEPTH``: "Fine sand" is a
"Sand / mud" row). Rows with no known positive there (head not annotated, label cut short above
``DEPTH``, a branch that ends above it) or with several (a multi-label row) are left out and
counted in the log; a split left empty is an error. The task becomes one taxonomy of K roots
(a one-level tree), trained with ``output_type="hsoftmax"``, which there is one softmax over the K
classes and its loss the cross-entropy; the evaluation reports ``<task>/accuracy`` and
``<task>/top1_macro_f1`` (arg-max decisions) beside the usual metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

import datasets
import numpy as np

from ..hierarchy import Hierarchy
from ..taxonomy import Taxonomy

#: Named tasks of the paper → (head, depth with 1 = root).
NAMED_TASKS = {"substrate_depth_2": ("substrate", 3)}

#: Codes of :func:`one_hot_labels` for rows outside the task.
NO_LABEL, SEVERAL_LABELS = -1, -2


@dataclass(frozen=True)
class OneHotTask:
    """``head``: the taxonomy's name; ``depth``: 1 = its roots; ``name``: the task taxonomy's name."""

    head: str
    depth: int
    name: str


def parse_one_hot_task(spec: str) -> OneHotTask:
    """``"substrate_depth_2"`` (a name of :data:`NAMED_TASKS`) or ``"HEAD:DEPTH"`` → :class:`OneHotTask`.

    Raises:
        ValueError: any other spelling (the message shows the accepted forms).
    """
    if spec in NAMED_TASKS:
        head, depth = NAMED_TASKS[spec]
        return OneHotTask(head, depth, spec)
    match = re.fullmatch(r"([A-Za-z0-9_\-]+):([0-9]+)", spec.strip())
    if not match or int(match.group(2)) < 1:
        raise ValueError(f"--one_hot_task {spec!r}: expected HEAD:DEPTH with DEPTH >= 1 (1 = the head's roots), "
                         f"e.g. substrate:3, or one of {sorted(NAMED_TASKS)}")
    head, depth = match.group(1), int(match.group(2))
    return OneHotTask(head, depth, f"{head}_d{depth}")


def task_classes(hierarchy: Hierarchy, task: OneHotTask) -> np.ndarray:
    """``(K,)`` global node indices of ``task.head``'s nodes at ``task.depth``, in hierarchy order.

    Raises:
        ValueError: an unknown head, or a depth with fewer than 2 nodes (nothing to classify).
    """
    if task.head not in hierarchy.head_names:
        raise ValueError(f"one-hot task {task.name!r}: no head {task.head!r} in the hierarchy "
                         f"(heads: {hierarchy.head_names})")
    head = hierarchy.head(task.head)
    local = np.flatnonzero(np.asarray(head.depth) == task.depth)
    if len(local) < 2:
        raise ValueError(f"one-hot task {task.name!r}: head {task.head!r} has {len(local)} node(s) at depth "
                         f"{task.depth} (depths 1..{int(np.max(head.depth))}; 1 = roots); a task needs >= 2 classes")
    return hierarchy.head_slice(task.head).start + local


def one_hot_labels(targets: np.ndarray, mask: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(rows,)`` int64 class of each row: the position in ``classes`` of its one known positive,
    :data:`NO_LABEL` (-1) when it has none there, :data:`SEVERAL_LABELS` (-2) when it has several.

    Args:
        targets, mask: ``(rows, N)`` {0, 1} over the whole hierarchy (mask 1 = known).
        classes: ``(K,)`` global node indices (:func:`task_classes`).
    """
    pos = (np.asarray(targets)[:, classes] > 0) & (np.asarray(mask)[:, classes] > 0)
    count = pos.sum(axis=1)
    return np.where(count == 1, pos.argmax(axis=1), np.where(count == 0, NO_LABEL, SEVERAL_LABELS)).astype(np.int64)


def one_hot_hierarchy(hierarchy: Hierarchy, task: OneHotTask) -> Hierarchy:
    """The task's hierarchy: one taxonomy ``task.name`` of K roots (the node keys), no children.

    A one-level *tree*, not ``Taxonomy.flat``: flat taxonomies mean independent multi-label bits
    (sigmoids whatever the output type), while the roots of a tree under ``hsoftmax`` share one
    softmax, the single-label model.
    """
    head = hierarchy.head(task.head)
    offset = hierarchy.head_slice(task.head).start
    names = tuple(head.nodes[i - offset] for i in task_classes(hierarchy, task))
    # sep "": the keys are whole paths of the source head, not paths inside this one
    return Hierarchy((Taxonomy(name=task.name, nodes=names, kind="tree", sep=""),))


def one_hot_splits(data: datasets.DatasetDict, split_labels: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   hierarchy: Hierarchy, task: OneHotTask | str, log: Callable[[str], None] = print
                   ) -> tuple[datasets.DatasetDict, Hierarchy]:
    """Every split cut down to the task's rows, with ``<task>_target`` (one-hot) and ``<task>_mask``
    (all known) columns of length K, and the task's one-head hierarchy.

    Args:
        split_labels: split → ``(targets, mask)``, each ``(rows, N)`` over ``hierarchy``
            (``data.label_matrices`` of that split).

    Logs, per split, the rows kept and the rows left out (no label at the depth / several labels).

    Raises:
        ValueError: a split with no row of the task (naming the split, head and depth).
    """
    task = parse_one_hot_task(task) if isinstance(task, str) else task
    classes = task_classes(hierarchy, task)
    task_hierarchy = one_hot_hierarchy(hierarchy, task)
    k = len(classes)
    feature = datasets.List(datasets.Value("uint8"), length=k)
    out = {}
    for split, ds in data.items():
        targets, mask = split_labels[split]
        if len(targets) != len(ds):
            raise ValueError(f"one-hot task {task.name!r}, split {split!r}: {len(targets)} label rows for "
                             f"{len(ds)} rows")
        labels = one_hot_labels(targets, mask, classes)
        keep = np.flatnonzero(labels >= 0)
        per_class = np.bincount(labels[keep], minlength=k)
        log(f"one-hot task {task.name} ({task.head} at depth {task.depth}, {k} classes), {split}: {len(keep)} of "
            f"{len(ds)} rows kept; left out: {int((labels == NO_LABEL).sum())} with no known label at that depth, "
            f"{int((labels == SEVERAL_LABELS).sum())} with several; rows per class {per_class.tolist()}")
        if len(keep) == 0:
            raise ValueError(f"one-hot task {task.name!r}: split {split!r} has no row with exactly one known "
                             f"{task.head!r} label at depth {task.depth} (of {len(ds)} rows)")
        one_hot = np.eye(k, dtype=np.uint8)[labels[keep]]
        part = ds.select(keep)
        part = part.add_column(f"{task.name}_target", list(one_hot), feature=feature)
        part = part.add_column(f"{task.name}_mask", list(np.ones_like(one_hot)), feature=feature)
        out[split] = part
    return datasets.DatasetDict(out), task_hierarchy
