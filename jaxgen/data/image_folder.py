"""A folder of image files as a dataset: PNG/JPEG, optionally one subfolder per class.

Every file is checked when the source is built, so an unreadable image is reported up front with
its path instead of being skipped silently in the middle of a run.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from jaxgen.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
  """Scales the shorter side to `size` (antialiased) and centre-crops a square."""
  w, h = image.size
  scale = size / min(w, h)
  if (w, h) != (size, size):
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    image = image.resize(new, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
  return image


class ImageFolderSource:
  """Random access over image files; labels from class subfolders (sorted by name) when present."""

  def __init__(self, path: str | pathlib.Path, image_size: int, channels: int):
    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
      raise DataError(f"Image folder '{root}' does not exist. Set data.path to a folder of "
                      "PNG/JPEG files (optionally one subfolder per class).")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
      raise DataError(f"Image folder '{root}' holds no PNG or JPEG files. Put images there "
                      "(optionally one subfolder per class) or point data.path elsewhere.")
    subdirs = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    loose = [p for p in files if p.parent == root]
    self.class_names = tuple(subdirs) if subdirs and not loose else ()
    bad = []
    for p in files:
      try:
        with Image.open(p) as im:
          im.verify()  # checks the file's structure and checksums without decoding all pixels
      except Exception as e:  # PIL raises many types for broken files
        bad.append(f"{p} ({type(e).__name__}: {e})")
    if bad:
      shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
      raise DataError(f"{len(bad)} of {len(files)} files in image folder '{root}' cannot be read: "
                      f"{shown}. Remove or replace them.")
    self.files = files
    self.labels = (np.array([self.class_names.index(p.relative_to(root).parts[0]) for p in files])
                   if self.class_names else None)
    self.image_size, self.channels = image_size, channels

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict:
    path = self.files[index]
    try:
      with Image.open(path) as im:
        im = im.convert("L" if self.channels == 1 else "RGB")
        image = np.asarray(resize_and_crop(im, self.image_size), np.uint8)
    except Exception as e:
      raise DataError(f"Image '{path}' could not be decoded ({type(e).__name__}: {e}). "
                      "Remove or replace it.") from e
    if image.ndim == 2:
      image = image[..., None]
    record = {"image": image}
    if self.labels is not None:
      record["label"] = self.labels[index]
    return record
