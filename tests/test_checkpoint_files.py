"""Broken checkpoint files (empty, truncated, text, Git LFS pointers) give errors naming the file and
what was expected, through the reader and through ``load_encoder_weights`` / ``model.load_encoder``."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from benthicnet_hf.checkpoint_io import CheckpointReadError, read_checkpoint_metadata, read_checkpoint_tensors
from benthicnet_hf.conversion import load_encoder_weights

TORCH_EXPECTED = r"expected a torch\.save checkpoint"
ST_EXPECTED = r"expected a safetensors file"


def good_bytes(tmp_path, suffix: str) -> bytes:
    tensors = timm.create_model("test_resnet", pretrained=False, num_classes=0).state_dict()
    path = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save({"state_dict": tensors}, path)
    return path.read_bytes()


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix, expected", [(".ckpt", TORCH_EXPECTED), (".pth", TORCH_EXPECTED),
                                              (".safetensors", ST_EXPECTED)])
def test_empty_file(tmp_path, suffix, expected):
    path = write(tmp_path, f"empty{suffix}", b"")
    with pytest.raises(CheckpointReadError, match=rf"empty{suffix}: the file is empty \(0 bytes\); {expected}"):
        read_checkpoint_tensors(path)


@pytest.mark.parametrize("suffix, expected", [(".ckpt", TORCH_EXPECTED), (".pth", TORCH_EXPECTED),
                                              (".safetensors", ST_EXPECTED)])
@pytest.mark.parametrize("keep", [0.5, 0.98, 20 / 1e9])
def test_truncated_file(tmp_path, suffix, expected, keep):
    data = good_bytes(tmp_path, suffix)
    path = write(tmp_path, f"cut{suffix}", data[: max(1, int(len(data) * keep))])
    with pytest.raises(CheckpointReadError, match=rf"cut{suffix}: (could not be read .* probably truncated|not a torch)"
                                                  rf".*{expected}"):
        read_checkpoint_tensors(path)


def test_text_file_named_ckpt_and_lfs_pointer(tmp_path):
    text = write(tmp_path, "notes.ckpt", b"epoch 3: loss 0.41\nsee wandb\n")
    with pytest.raises(CheckpointReadError, match=rf"notes\.ckpt: not a torch checkpoint: it looks like a text file, "
                                                  rf"starting 'epoch 3.*{TORCH_EXPECTED}"):
        read_checkpoint_tensors(text)
    lfs = write(tmp_path, "bt.pth", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    with pytest.raises(CheckpointReadError, match=r"bt\.pth: .*Git LFS pointer.*git lfs pull"):
        read_checkpoint_tensors(lfs)
    st = write(tmp_path, "enc.safetensors", b"hello, not tensors at all")
    with pytest.raises(CheckpointReadError, match=rf"enc\.safetensors: could not be read .*text file.*{ST_EXPECTED}"):
        read_checkpoint_metadata(st)


def test_good_files_still_read(tmp_path):
    for suffix in (".ckpt", ".safetensors"):
        write(tmp_path, f"ok{suffix}", good_bytes(tmp_path, suffix))
        assert "conv1.0.weight" in read_checkpoint_tensors(tmp_path / f"ok{suffix}")


def test_load_encoder_weights_passes_the_clear_error_through(tmp_path):
    data = good_bytes(tmp_path, ".ckpt")
    path = write(tmp_path, "half.ckpt", data[: len(data) // 2])
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    with pytest.raises(CheckpointReadError, match=r"half\.ckpt: could not be read"):
        load_encoder_weights(encoder, path)
