"""MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners").

A timm ``VisionTransformer`` encodes a random 25% of the patches (mask ratio 0.75); a light
transformer decoder (512 wide, 8 blocks) sees the encoded patches plus a shared mask token at
every masked position and predicts their pixels. Loss: mean squared error on the **masked
patches only**, against per-patch normalised pixels ``(x - mean_patch) / sqrt(var_patch + 1e-6)``
(``var`` unbiased, as the reference code's ``Tensor.var``).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from .encoder import build_timm_encoder, is_vision_transformer

__all__ = ["patchify", "mae_target", "mae_loss", "random_patch_mask", "MAE"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(batch, C, H, W) -> (batch, L, patch_size**2 * C)``, patches row-major, pixels (p, q, c)."""
    b, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch_size}")
    gh, gw = h // patch_size, w // patch_size
    x = images.reshape(b, c, gh, patch_size, gw, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)


def mae_target(images: torch.Tensor, patch_size: int, norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Reconstruction target ``(batch, L, patch_size**2 * C)``: per-patch normalised pixels."""
    target = patchify(images, patch_size)
    return _normalise_patches(target, eps) if norm_pix else target


def _normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the last dim (pixels of a patch; ``var`` unbiased)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE averaged over pixels of each patch, then over masked patches.

    Args:
        pred, target: ``(batch, L, patch_dim)``.
        mask: ``(batch, L)``, 1 = masked (the patches the loss is computed on).

    Returns:
        scalar ``Σ_{b,l} mask_bl · mean_d (pred - target)²_bld / Σ mask``.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"expected pred/target (B, L, D) and mask (B, L), got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}, {tuple(mask.shape)}")
    dtype = torch.promote_types(pred.dtype, torch.float32)  # bf16 predictions: compute in float32
    per_patch = (pred.to(dtype) - target.to(dtype)).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def random_patch_mask(batch: int, num_patches: int, mask_ratio: float, device: torch.device
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by argsort of uniform noise.

    Returns:
        ``ids_keep (batch, n_keep)``, ``ids_masked (batch, L - n_keep)``, ``ids_restore (batch, L)`` and
        ``mask (batch, L)`` (1 = masked), with ``n_keep = int(L * (1 - mask_ratio))``.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    n_keep = int(num_patches * (1.0 - mask_ratio))
    noise = torch.rand(batch, num_patches, device=device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :n_keep] = 0
    mask = mask.gather(1, ids_restore)
    return ids_shuffle[:, :n_keep], ids_shuffle[:, n_keep:], ids_restore, mask


class MAE(nn.Module):
    """Masked autoencoder around a timm ViT; ``forward(images) -> loss``.

    Args:
        encoder_name: timm ViT name (``vit_base_patch16_224``; tests ``test_vit``).
        mask_ratio: fraction of patches hidden from the encoder (0.75).
        decoder_dim, decoder_depth, decoder_heads: light decoder (512, 8, 16).
        norm_pix_loss: normalise the target per patch (True, as the paper's best setting).
    """

    default_optimizer = {"name": "adamw", "lr": 1.5e-4, "weight_decay": 0.05, "betas": (0.9, 0.95)}

    def __init__(
        self,
        encoder_name: str = "vit_base_patch16_224",
        *,
        image_size: Optional[int] = None,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix_loss: bool = True,
        encoder_kwargs: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.encoder = build_timm_encoder(encoder_name, image_size, **(encoder_kwargs or {}))
        if not is_vision_transformer(self.encoder):
            raise ValueError(f"MAE needs a timm VisionTransformer encoder, {encoder_name!r} is "
                             f"{type(self.encoder).__name__}")
        self.patch_size = int(self.encoder.patch_embed.patch_size[0])
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        dim = self.encoder.embed_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size ** 2 * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        self._pos_cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def _encode_visible(self, images: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Encoder on visible patches: ``(batch, prefix + n_keep, dim)``, ids_masked, ids_restore, mask, grid."""
        vit = self.encoder
        x = vit.patch_embed(images)
        grid = tuple(x.shape[1:3]) if x.ndim == 4 else vit.patch_embed.grid_size
        x = vit._pos_embed(x)  # adds position embeddings and prefix (class) tokens
        n_prefix = vit.num_prefix_tokens
        prefix, patches = x[:, :n_prefix], x[:, n_prefix:]
        b, n, d = patches.shape
        ids_keep, ids_masked, ids_restore, mask = random_patch_mask(b, n, self.mask_ratio, images.device)
        patches = patches.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        x = vit.norm_pre(torch.cat([prefix, patches], dim=1))
        x = vit.norm(vit.blocks(x))
        return x, ids_masked, ids_restore, mask, (int(grid[0]), int(grid[1]))

    def _decoder_pos_embed(self, grid: tuple[int, int], dim: int, device: torch.device, dtype: torch.dtype
                           ) -> torch.Tensor:
        """Fixed 2-D sin-cos position embedding ``(L, dim)``, built once per grid/device/dtype."""
        key = (grid, dim, device, dtype)
        if key not in self._pos_cache:
            self._pos_cache[key] = build_sincos2d_pos_embed(list(grid), dim=dim, device=device, dtype=dtype)
        return self._pos_cache[key]

    def _decode(self, x: torch.Tensor, ids_masked: torch.Tensor, ids_restore: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        """Decoder: ``(batch, prefix + n_keep, dim) -> (batch, L - n_keep, patch_dim)``, masked patches only.

        Only the masked patches enter the loss, so only they go through the pixel projection.
        """
        n_prefix = self.encoder.num_prefix_tokens
        x = self.decoder_embed(x)
        prefix, visible = x[:, :n_prefix], x[:, n_prefix:]
        b, n_total = ids_restore.shape
        dim = x.shape[-1]
        masks = self.mask_token.to(x.dtype).expand(b, n_total - visible.shape[1], -1)
        full = torch.cat([visible, masks], dim=1)
        full = full.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))
        pos = self._decoder_pos_embed(grid, dim, x.device, x.dtype)
        x = torch.cat([prefix, full + pos.unsqueeze(0)], dim=1)
        x = self.decoder_norm(self.decoder_blocks(x))[:, n_prefix:]
        return self.decoder_pred(x.gather(1, ids_masked.unsqueeze(-1).expand(-1, -1, dim)))

    def forward_with_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images (batch, 3, H, W)`` -> ``{"loss", "pred", "target", "ids_masked", "mask"}``.

        ``pred`` and ``target`` are ``(B, M, D)`` for the ``M = L - n_keep`` masked patches, in the
        order of ``ids_masked (B, M)`` (patch indices); ``mask (B, L)`` is 1 at the masked patches.
        """
        latent, ids_masked, ids_restore, mask, grid = self._encode_visible(images)
        pred = self._decode(latent, ids_masked, ids_restore, grid)
        patches = patchify(images.float(), self.patch_size)
        target = patches.gather(1, ids_masked.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        if self.norm_pix_loss:
            target = _normalise_patches(target)
        # every image has the same number of masked patches: the plain mean is mae_loss's masked mean
        loss = (pred.to(target.dtype) - target).pow(2).mean()
        return {"loss": loss, "pred": pred, "target": target, "ids_masked": ids_masked, "mask": mask}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(batch, 3, H, W)`` -> scalar loss."""
        return self.forward_with_outputs(images)["loss"]
