"""``--recipe``: the BenthicNet authors' fine-tuning settings as defaults, and their PCA lighting.

References: the numbers of the authors' config files (``cfgs/`` of DalhousieAI/benthicnet_probes)
written out here, and the AlexNet PCA-lighting formula in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.data.transforms import (
    IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, PCALighting, pca_lighting, train_transform,
)
from benthicnet_hf.training import parse_args
from benthicnet_hf.training.components import augmentation_options
from benthicnet_hf.training.keyed_loader import reseed_all
from benthicnet_hf.training.recipes import RECIPES, recipe_overrides, recipe_summary
from benthicnet_hf.training.run_dir import args_snapshot

BASE = ["--demo", "--output_dir", "/tmp/unused_recipe_run"]

# The authors' configs, read by hand: (optimizer.lr, weight_decay, max_epochs, batch_size, betas,
# backbone.grad, head hidden dims) and their get_augs(colour_jitter=True) stack.
AUTHORS = {
    "linear_probe": dict(learning_rate=3e-5, weight_decay=1e-5, num_train_epochs=100, per_device_train_batch_size=128,
                         adam_beta2=0.999, linear_probe=True, head_hidden_dim=2048),
    "hft_resnet50": dict(learning_rate=3e-8, weight_decay=0.0, num_train_epochs=300, per_device_train_batch_size=128,
                         adam_beta2=0.999, linear_probe=False, head_hidden_dim=2048),
    "hft_vit": dict(learning_rate=3e-7, weight_decay=0.0, num_train_epochs=300, per_device_train_batch_size=128,
                    adam_beta2=0.95, linear_probe=False, head_hidden_dim=2048),
    "one_hot_probe": dict(learning_rate=3e-5, weight_decay=1e-5, num_train_epochs=100, per_device_train_batch_size=256,
                          adam_beta2=0.999, linear_probe=True, head_hidden_dim=0),
    "one_hot_hft": dict(learning_rate=3e-6, weight_decay=0.0, num_train_epochs=300, per_device_train_batch_size=256,
                        adam_beta2=0.999, linear_probe=False, head_hidden_dim=0),
}
AUGMENTATION = dict(crop_scale_min=0.1, vflip=0.0, color_jitter=0.4, pca_lighting=0.1)


# ------------------------------------------------------------------------------- PCA lighting
def numpy_lighting(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Krizhevsky et al. 2012: add sum_j alpha_j lambda_j p_j (p_j the j-th eigenvector) to every pixel."""
    lam = np.array(IMAGENET_PCA_EIGVAL)
    vec = np.array(IMAGENET_PCA_EIGVEC)
    offset = np.zeros(3)
    for j in range(3):
        offset += alpha[j] * lam[j] * vec[:, j]
    return image + offset[:, None, None]


def test_pca_lighting_matches_the_numpy_formula() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((3, 5, 7)).astype(np.float32)
    for _ in range(5):
        alpha = rng.normal(0, 0.1, 3)
        got = pca_lighting(torch.from_numpy(image), torch.tensor(alpha), torch.tensor(IMAGENET_PCA_EIGVAL),
                           torch.tensor(IMAGENET_PCA_EIGVEC))
        np.testing.assert_allclose(got.numpy(), numpy_lighting(image, alpha), atol=1e-6)


def test_pca_lighting_noise_has_the_pca_covariance() -> None:
    """Offsets of N(0, s^2) alphas have covariance V diag((s lambda)^2) V^T, the same for every pixel."""
    torch.manual_seed(0)
    lighting = PCALighting(0.1)
    image = torch.zeros(3, 2, 2)
    offsets = torch.stack([lighting(image) for _ in range(4000)])  # (draws, 3, 2, 2)
    assert torch.equal(offsets, offsets[..., :1, :1].expand_as(offsets))  # one offset per image
    vec, lam = np.array(IMAGENET_PCA_EIGVEC), np.array(IMAGENET_PCA_EIGVAL)
    expected = vec @ np.diag((0.1 * lam) ** 2) @ vec.T
    got = np.cov(offsets[:, :, 0, 0].numpy().T)
    np.testing.assert_allclose(got, expected, atol=0.08 * expected.max())
    assert torch.equal(PCALighting(0.0)(image + 0.3), image + 0.3)
    with pytest.raises(ValueError, match="alphastd"):
        PCALighting(-0.1)


def test_train_transform_adds_lighting_after_the_colour_steps_and_before_normalise() -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    with_light = train_transform(24, scale=(0.1, 1.0), vflip=0.0, pca_lighting=0.1)
    plain = train_transform(24, scale=(0.1, 1.0), vflip=0.0)
    names = [type(t).__name__ for t in with_light.transforms]
    assert names.index("PCALighting") == names.index("Normalize") - 1
    assert names.index("PCALighting") > names.index("ColorJitter")
    # the same keyed seed: the crop/flip/jitter draws come first, so the two differ by one RGB offset
    reseed_all(7)
    a = with_light(image)
    reseed_all(7)
    b = plain(image)
    std = torch.tensor((0.219, 0.215, 0.209)).view(3, 1, 1)  # BenthicNet std: back to [0, 1] units
    diff = (a - b) * std
    assert diff.abs().max() > 1e-4
    torch.testing.assert_close(diff, diff[:, :1, :1].expand_as(diff), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_each_recipe_sets_the_authors_values(name: str) -> None:
    encoder = ["--encoder", "vit_small_patch16_224"] if name == "hft_vit" else []
    args = parse_args(BASE + encoder + ["--recipe", name])
    assert args.recipe == name
    for field, value in {**AUTHORS[name], **AUGMENTATION, "warmup_epochs": 10.0, "adam_beta1": 0.9}.items():
        assert getattr(args, field) == pytest.approx(value), field
    assert recipe_overrides(args) == {}


def test_explicit_flags_win_wherever_they_stand() -> None:
    before = parse_args(BASE + ["--learning_rate", "1e-3", "--recipe", "linear_probe", "--pca_lighting", "0"])
    after = parse_args(BASE + ["--recipe", "linear_probe", "--learning_rate", "1e-3", "--pca_lighting", "0"])
    for args in (before, after):
        assert args.learning_rate == 1e-3 and args.pca_lighting == 0.0
        assert args.weight_decay == 1e-5 and args.crop_scale_min == 0.1  # the rest from the recipe
        assert recipe_overrides(args) == {"learning_rate": (3e-5, 1e-3), "pca_lighting": (0.1, 0.0)}
    plain = parse_args(BASE)  # no recipe: the library's own defaults
    assert plain.recipe is None and plain.crop_scale_min == 0.35 and plain.pca_lighting == 0.0
    assert recipe_summary(plain) is None


def test_hft_picks_the_learning_rate_by_encoder_and_is_saved_resolved() -> None:
    vit = parse_args(BASE + ["--encoder", "vit_base_patch16_224", "--recipe=hft"])
    cnn = parse_args(BASE + ["--recipe", "hft", "--encoder", "resnet50"])
    assert (vit.recipe, vit.learning_rate, vit.adam_beta2) == ("hft_vit", 3e-7, 0.95)
    assert (cnn.recipe, cnn.learning_rate, cnn.adam_beta2) == ("hft_resnet50", 3e-8, 0.999)
    snapshot = args_snapshot(vit)  # the run settings a resume is checked against
    assert snapshot["recipe"] == "hft_vit" and snapshot["learning_rate"] == 3e-7


def test_an_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="linear_probe.*hft"):
        parse_args(BASE + ["--recipe", "fast"])


def test_recipe_augmentation_reaches_the_training_transform() -> None:
    args = parse_args(BASE + ["--recipe", "linear_probe"])
    options = augmentation_options(args)
    assert options == {"vflip": 0.0, "color_jitter": 0.4, "pca_lighting": 0.1, "scale": (0.1, 1.0)}
    tf = train_transform(32, **options)
    crop = tf.transforms[0]
    assert tuple(crop.scale) == (0.1, 1.0)
    assert "RandomVerticalFlip" not in [type(t).__name__ for t in tf.transforms]
    assert any(isinstance(t, PCALighting) and t.alphastd == 0.1 for t in tf.transforms)


def test_the_model_card_names_the_recipe_its_values_and_the_overrides() -> None:
    from benthicnet_hf.training.publish import render_card

    args = parse_args(BASE + ["--recipe", "one_hot_probe", "--num_train_epochs", "5"])
    card = str(render_card(Hierarchy.catami().subset(["substrate"]), args, {}, False))
    assert "one_hot_probe" in card and "resnet50_ohp.json" in card
    assert "learning_rate=3e-05" in card and "pca_lighting=0.1" in card
    assert "overridden: num_train_epochs=5 (recipe 100)" in card
    assert set(RECIPES) == set(AUTHORS)
