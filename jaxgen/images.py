"""Image grids: float NHWC in [-1, 1] -> PNG."""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 1, upscale: int = 1) -> np.ndarray:
  """Tiles N images (H, W, C) into one uint8 (rows*H', cols*W', 3) array with `pad` pixels between."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  if c == 1:
    images = np.repeat(images, 3, axis=-1)
  if upscale > 1:
    images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)
    h, w = h * upscale, w * upscale
  cols = nrow or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
  return grid


def save_grid(images: np.ndarray, path: str | pathlib.Path, nrow: int | None = None) -> pathlib.Path:
  """Writes a grid PNG; small images are upscaled (nearest) so the grid is at least ~64 px per image."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  upscale = max(1, 64 // images.shape[1])
  Image.fromarray(make_grid(images, nrow, upscale=upscale)).save(path)
  return path
