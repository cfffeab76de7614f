"""A deterministic synthetic seafloor dataset, drawn with numpy + PIL (no image blobs shipped).

Each image is a substrate texture (fine sand, mud, gravel, boulders, rock), optionally with a
bedform (2D ripples, bioturbation burrows) and organisms (kelp-like fronds, sponge-like blobs,
urchins, sea stars), labelled with the real CATAMI paths of :meth:`Hierarchy.catami` that match
what is drawn. The labels carry the missing information of real surveys:

- labels cut short (``Substrate > Unconsolidated (soft)`` for fine sand, ``Biota > Macroalgae``);
- missing heads (relief, bedforms, colour, sometimes substrate);
- non-exhaustive biota: survey ``demo_survey_b`` lists at most one of the organisms drawn, while
  ``demo_survey_a`` lists all of them. Every CATAMI head is exhaustive by default, so survey B opts
  out for biota: pass :data:`DEMO_SOURCE_EXHAUSTIVE` (``source_exhaustive=``) to the builder.

Sites have their own substrate mix, so a site-grouped split is meaningful.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from .splits import grouped_split

SAND = "Substrate > Unconsolidated (soft) > Sand / mud (<2mm) > Fine sand (no shell fragments)"
MUD = "Substrate > Unconsolidated (soft) > Sand / mud (<2mm) > Mud / silt (<64um)"
GRAVEL = "Substrate > Unconsolidated (soft) > Pebble / gravel > Gravel (2-10mm)"
BOULDERS = "Substrate > Consolidated (hard) > Boulders"
ROCK = "Substrate > Consolidated (hard) > Rock"
SUBSTRATES = (SAND, MUD, GRAVEL, BOULDERS, ROCK)
RELIEF = {SAND: "Flat", MUD: "Flat", GRAVEL: "Low / moderate > Low (<1m)",
          BOULDERS: "Low / moderate > Moderate (1-3m)", ROCK: "High > High (>3m)"}
RIPPLES = "Bedforms > 2D > Ripples (<10cm height)"
BIOTURBATED = "Bedforms > Bioturbated"
NO_BEDFORM = "None"
BURROWS = "Bioturbation > Dwelling traces > Vertical burrow"
ORGANISMS = {  # label path → (colour qualifier, cut-short label)
    "kelp": ("Biota > Macroalgae > Large canopy-forming > Brown", "Brown", "Biota > Macroalgae"),
    "sponge": ("Biota > Sponges > Massive forms > Simple", "Yellow", "Biota > Sponges"),
    "urchin": ("Biota > Echinoderms > Sea urchins > Regular urchins", "Purple", "Biota > Echinoderms"),
    "star": ("Biota > Echinoderms > Sea stars", "Orange", "Biota > Echinoderms"),
}
NO_BIOTA = "No visible biota"
#: survey B lists at most one organism per image: its biota is the demo's non-exhaustive opt-in
DEMO_SOURCE_EXHAUSTIVE = {"demo_survey_b": {"biota": False}}
_BASE = {SAND: (200, 182, 135), MUD: (92, 88, 72), GRAVEL: (128, 118, 100), BOULDERS: (70, 82, 78),
         ROCK: (120, 120, 125)}


def _noise(rng: np.random.Generator, size: int, cells: int, amp: float) -> np.ndarray:
    """(size, size) smooth noise: a coarse random grid upsampled bicubically."""
    grid = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img) * amp


def _substrate(rng: np.random.Generator, kind: str, s: int) -> Image.Image:
    base = np.asarray(_BASE[kind], dtype=np.float32) * rng.uniform(0.85, 1.15)
    arr = np.broadcast_to(base, (s, s, 3)).copy()
    if kind == SAND:
        arr += (_noise(rng, s, 6, 10) + rng.normal(0, 6, (s, s)))[..., None]
    elif kind == MUD:
        arr += _noise(rng, s, 4, 8)[..., None]
    elif kind == ROCK:
        arr += (_noise(rng, s, 10, 28) + rng.normal(0, 10, (s, s)))[..., None]
    else:
        arr += _noise(rng, s, 8, 8)[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(img)
    if kind == GRAVEL:
        for _ in range(int(s * s / 18)):
            x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(1.2, 2.6) * s / 96
            g = int(rng.uniform(90, 215))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(g, int(g * 0.95), int(g * 0.85)))
    elif kind == BOULDERS:
        for _ in range(int(rng.integers(3, 6))):
            x, y = rng.uniform(0, s), rng.uniform(0, s)
            rx, ry = rng.uniform(0.14, 0.28) * s, rng.uniform(0.12, 0.24) * s
            g = int(rng.uniform(140, 190))
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=(g - 30, g - 30, g - 38), outline=(30, 34, 32),
                         width=max(1, s // 48))
            draw.ellipse([x - rx * 0.6, y - ry * 0.7, x + rx * 0.3, y + ry * 0.1], fill=(g, g, g - 10))
    elif kind == ROCK:
        for _ in range(int(rng.integers(3, 7))):
            pts = np.cumsum(rng.normal(0, s / 8, (6, 2)), axis=0) + rng.uniform(0, s, 2)
            draw.line([tuple(p) for p in pts], fill=(25, 25, 30), width=max(1, s // 40))
    return img


def _ripples(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    s = img.size[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(0.09, 0.14) * s
    wave = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period + rng.uniform(0, 6.3))
    arr = np.asarray(img, dtype=np.float32) + (wave * 38)[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


def _burrows(rng: np.random.Generator, draw: ImageDraw.ImageDraw, s: int) -> None:
    for _ in range(int(rng.integers(5, 11))):
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.025, 0.05) * s
        draw.ellipse([x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r], fill=(225, 212, 180))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(20, 16, 12))


def _organism(rng: np.random.Generator, draw: ImageDraw.ImageDraw, kind: str, s: int) -> None:
    x, y = rng.uniform(0.15, 0.85, 2) * s
    if kind == "kelp":
        for _ in range(int(rng.integers(3, 6))):
            ang = rng.uniform(0, 2 * np.pi)
            pts = [(x + t * np.cos(ang + 0.4 * np.sin(t / 6)), y + t * np.sin(ang + 0.4 * np.sin(t / 6)))
                   for t in np.linspace(0, rng.uniform(0.3, 0.55) * s, 8)]
            draw.line(pts, fill=(110, 75, 25), width=max(2, s // 14))
    elif kind == "sponge":
        for _ in range(int(rng.integers(2, 5))):
            dx, dy, r = rng.normal(0, 0.06 * s, 2).tolist() + [rng.uniform(0.06, 0.11) * s]
            draw.ellipse([x + dx - r, y + dy - r, x + dx + r, y + dy + r], fill=(235, 200, 40))
    elif kind == "urchin":
        r = rng.uniform(0.06, 0.09) * s
        for a in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            draw.line([(x, y), (x + 1.9 * r * np.cos(a), y + 1.9 * r * np.sin(a))], fill=(60, 20, 70), width=1)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(95, 35, 110))
    else:  # sea star: five arms
        r, rot = rng.uniform(0.12, 0.18) * s, rng.uniform(0, 2 * np.pi)
        pts = [(x + (r if k % 2 == 0 else r * 0.38) * np.cos(rot + k * np.pi / 5),
                y + (r if k % 2 == 0 else r * 0.38) * np.sin(rot + k * np.pi / 5)) for k in range(10)]
        draw.polygon(pts, fill=(240, 120, 30))


def _row(rng: np.random.Generator, s: int, substrate: str, survey: str) -> tuple[Image.Image, dict[str, str]]:
    """Draw one image and its label cells."""
    img = _substrate(rng, substrate, s)
    soft = substrate in (SAND, MUD)
    bedform = NO_BEDFORM
    u = rng.uniform()
    if soft and u < 0.35:
        bedform = RIPPLES
        img = _ripples(rng, img)
    elif soft and u < 0.6:
        bedform = BIOTURBATED
    draw = ImageDraw.Draw(img)
    biota: list[str] = []
    if bedform == BIOTURBATED:
        _burrows(rng, draw, s)
        biota.append(BURROWS)
    kinds = [k for k in ORGANISMS if rng.uniform() < (0.3 if not soft or k != "kelp" else 0.12)]
    colours = []
    for k in kinds:
        _organism(rng, draw, k, s)
        biota.append(ORGANISMS[k][0])
        colours.append(ORGANISMS[k][1])
    img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.0, 0.6)))

    # what an annotator wrote: cut short, missing heads, non-exhaustive biota
    sub_label = substrate
    if substrate == SAND and rng.uniform() < 0.2:
        sub_label = "Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"
    elif soft and rng.uniform() < 0.1:
        sub_label = "Substrate > Unconsolidated (soft)"
    if rng.uniform() < 0.05:
        sub_label = ""
    if not biota:
        biota_cell = [NO_BIOTA]
    elif survey == "demo_survey_b":
        pick = biota[int(rng.integers(len(biota)))]
        short = next((v[2] for v in ORGANISMS.values() if v[0] == pick), None)
        biota_cell = [short if short and rng.uniform() < 0.25 else pick]
    else:
        biota_cell = biota
    cells = {
        "catami_biota": ";".join(biota_cell) if rng.uniform() > 0.05 else "",
        "catami_substrate": sub_label,
        "catami_relief": RELIEF[substrate] if rng.uniform() > 0.35 else "",
        "catami_bedforms": bedform if rng.uniform() > 0.25 else "",
        "colour_qualifier": ";".join(dict.fromkeys(colours)) if colours and rng.uniform() > 0.3 else "",
    }
    return img, cells


def make_demo_dataset(out_dir: str | Path, num_images: int = 400, image_size: int = 96, seed: int = 0,
                      with_partition: bool = False) -> Path:
    """Write ``out_dir/images/<site>/<name>.png`` and ``out_dir/labels.csv``; returns ``labels.csv``.

    The table has the BenthicNet columns ``image`` (relative to ``out_dir``), ``dataset``, ``site``,
    ``latitude``, ``longitude``, ``date``, ``catami_biota``, ``catami_substrate``,
    ``catami_relief``, ``catami_bedforms``, ``colour_qualifier`` (label paths, ``;`` between
    several, empty = missing head) and, with ``with_partition``, a site-grouped ``partition``.
    Same ``seed`` → same images and table, byte for byte.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    n_sites = max(6, num_images // 16)
    site_mix = rng.dirichlet(np.full(len(SUBSTRATES), 0.6), size=n_sites) * 0.6 + 0.4 / len(SUBSTRATES)
    site_lat = 43.5 + rng.uniform(0, 2.0, n_sites)
    site_lon = -66.0 + rng.uniform(0, 3.0, n_sites)
    site_day = rng.integers(0, 3 * 365, n_sites)
    site_of_row = np.sort(rng.integers(0, n_sites, num_images))
    rows = []
    for i, site in enumerate(site_of_row):
        survey = "demo_survey_a" if site % 2 == 0 else "demo_survey_b"
        substrate = SUBSTRATES[int(rng.choice(len(SUBSTRATES), p=site_mix[site]))]
        img, cells = _row(rng, image_size, substrate, survey)
        site_name = f"site_{site:03d}"
        rel = Path("images") / site_name / f"{site_name}_{i:05d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(out / rel, optimize=False)
        rows.append({
            "image": rel.as_posix(), "dataset": survey, "site": site_name,
            "latitude": round(float(site_lat[site] + rng.normal(0, 1e-3)), 6),
            "longitude": round(float(site_lon[site] + rng.normal(0, 1e-3)), 6),
            "date": str(np.datetime64("2018-05-01") + np.timedelta64(int(site_day[site]), "D")),
            **cells,
        })
    table = pd.DataFrame(rows)
    if with_partition:
        table["partition"] = grouped_split(table["site"].tolist(), seed=seed)
    path = out / "labels.csv"
    table.to_csv(path, index=False)
    return path
