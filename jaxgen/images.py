"""Image grids (float NHWC in [-1, 1]) and 2D point scatter plots -> PNG."""

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


def scatter_plot(points: np.ndarray, size: int = 384, extent: float | None = None) -> np.ndarray:
  """(N, 2) points -> a uint8 (size, size, 3) scatter plot on a white square with axes through 0.

  The square spans [-extent, extent]^2 (default: the 99.5th percentile of |coordinate| plus 10%,
  so a few far outliers do not shrink the plot). Points outside are drawn on the border in red.
  """
  points = np.asarray(points, np.float64)
  finite = points[np.all(np.isfinite(points), axis=1)]
  if extent is None:
    extent = 1.1 * float(np.percentile(np.abs(finite), 99.5)) if len(finite) else 1.0
    extent = extent or 1.0
  canvas = np.full((size, size, 3), 255, np.uint8)
  centre = size // 2
  canvas[centre, :] = canvas[:, centre] = 220
  pix = np.round((finite / extent + 1.0) * 0.5 * (size - 1)).astype(np.int64)
  outside = np.any((pix < 0) | (pix >= size), axis=1)
  pix = np.clip(pix, 0, size - 1)
  cols, rows = pix[:, 0], size - 1 - pix[:, 1]  # y up
  for dr in (-1, 0, 1):
    for dc in (-1, 0, 1):
      r, c = np.clip(rows + dr, 0, size - 1), np.clip(cols + dc, 0, size - 1)
      canvas[r[~outside], c[~outside]] = (31, 119, 180)
      canvas[r[outside], c[outside]] = (214, 39, 40)
  return canvas


def sample_image(samples: np.ndarray, nrow: int | None = None) -> np.ndarray:
  """The picture of a batch of samples: a grid for images (N, H, W, C), a scatter plot for (N, 2)."""
  samples = np.asarray(samples)
  if samples.ndim == 2:
    return scatter_plot(samples)
  upscale = max(1, 64 // samples.shape[1])  # small images are upscaled (nearest) to ~64 px each
  return make_grid(samples, nrow, upscale=upscale)


def save_grid(samples: np.ndarray, path: str | pathlib.Path, nrow: int | None = None) -> pathlib.Path:
  """Writes `sample_image(samples)` as a PNG."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(sample_image(samples, nrow)).save(path)
  return path


def save_trajectory(frames: np.ndarray, gif_path: str | pathlib.Path, nrow: int | None = None,
                    strip_samples: int = 8, strip_columns: int = 12,
                    frame_ms: int = 80) -> tuple[pathlib.Path, pathlib.Path]:
  """The denoising trajectory [F, N, ...] (noise first, the samples last) as an animated GIF of
  sample grids (the last frame held for a second) and a PNG strip beside it (PATH.png): one row per
  sample (the first `strip_samples`), at most `strip_columns` frames from noise to image; for 2D
  points, one scatter plot of every point per frame."""
  frames = np.asarray(frames)
  gif_path = pathlib.Path(gif_path)
  gif_path.parent.mkdir(parents=True, exist_ok=True)
  pictures = [Image.fromarray(sample_image(f, nrow)) for f in frames]
  durations = [frame_ms] * (len(pictures) - 1) + [1000]
  pictures[0].save(gif_path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
  columns = np.unique(np.round(np.linspace(0, len(frames) - 1, min(strip_columns, len(frames)))).astype(int))
  strip_path = gif_path.with_suffix(".png")
  if frames.ndim == 3:  # 2D points: one scatter plot of all of them per column
    Image.fromarray(np.concatenate([scatter_plot(p, size=192) for p in frames[columns]],
                                   axis=1)).save(strip_path)
  else:
    picked = frames[columns][:, :strip_samples]        # [C, S, ...]
    rows = np.swapaxes(picked, 0, 1).reshape((-1,) + picked.shape[2:])  # sample-major
    upscale = max(1, 48 // picked.shape[2])
    Image.fromarray(make_grid(rows, nrow=len(columns), upscale=upscale)).save(strip_path)
  return gif_path, strip_path
