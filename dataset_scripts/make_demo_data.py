"""Render the deterministic synthetic demo dataset (images + labels.csv). Logic: benthicnet_hf.data.demo."""

from __future__ import annotations

import argparse

from benthicnet_hf.data.demo import make_demo_dataset


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out_dir")
    p.add_argument("--num-images", type=int, default=400)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-partition", action="store_true", help="add a site-grouped 'partition' column")
    a = p.parse_args(argv)
    path = make_demo_dataset(a.out_dir, a.num_images, a.image_size, a.seed, with_partition=a.with_partition)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
