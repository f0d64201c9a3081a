"""The builtin offline datasets, generated as NumPy arrays (deterministic by seed).

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 16 grey levels).
- `shapes`: procedural RGB images of coloured shapes with a class label, attribute labels and an
  English caption each, for class, text and spatial conditioning.
- `toy2d`: 2D point clouds: the 8-Gaussian ring and 25-Gaussian grid of the PacGAN paper, two
  moons, a swiss roll and a checkerboard.

`jaxgen.data.tfds_store` writes these once as TFDS array_record datasets; pipelines read them back.
"""

from __future__ import annotations

import numpy as np

DIGITS_TEST_SIZE = 297  # the last 297 of sklearn's 1797 digits; the first 1500 are the train split.

SHAPE_CLASSES = ("circle", "square", "triangle", "diamond", "cross", "ring")
SHAPE_COLOURS = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40),
    "magenta": (220, 50, 220), "cyan": (40, 220, 230), "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
SHAPE_SIZES = {"small": 0.16, "medium": 0.23, "large": 0.31}  # radius as a fraction of the side
# Position words for a 3x3 grid of the image, row-major from the top left.
SHAPE_POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left",
                   "bottom", "bottom right")
# The label names of the builtin datasets that have class labels.
CLASS_NAMES = {"digits": tuple(str(i) for i in range(10)), "shapes": SHAPE_CLASSES}

TOY2D_VARIANTS = ("ring8", "grid25", "moons", "swissroll", "checkerboard")
RING8_RADIUS, RING8_STD = 1.0, 0.01
GRID25_VALUES, GRID25_STD = (-4.0, -2.0, 0.0, 2.0, 4.0), 0.05


def digits(split: str) -> dict[str, np.ndarray]:
  """sklearn digits as uint8 images (H, W, 1) in 0..255 and int64 labels."""
  from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
  bunch = load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int64)
  cut = len(images) - DIGITS_TEST_SIZE
  if split == "train":
    return {"image": images[:cut], "label": labels[:cut]}
  if split == "test":
    return {"image": images[cut:], "label": labels[cut:]}
  raise ValueError(f"digits has splits 'train' and 'test', not '{split}'")


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
  """Inside-test for a shape of circumradius r centred at the origin (v grows downwards)."""
  au, av = np.abs(u), np.abs(v)
  if kind == "circle":
    return u * u + v * v <= r * r
  if kind == "square":
    return np.maximum(au, av) <= 0.8 * r
  if kind == "diamond":
    return au + av <= r
  if kind == "triangle":  # equilateral, apex up, inscribed in the circle of radius r
    return (v <= 0.5 * r) & (np.sqrt(3.0) * au <= v + r)
  if kind == "cross":
    arm = 0.3 * r
    return ((au <= arm) & (av <= r)) | ((av <= arm) & (au <= r))
  if kind == "ring":
    d2 = u * u + v * v
    return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
  raise ValueError(kind)


def shapes(num: int, image_size: int = 32, seed: int = 0, supersample: int = 4
           ) -> dict[str, np.ndarray]:
  """Renders `num` images of one antialiased shape on black, with labels and captions.

  Returns image uint8 (N, S, S, 3); label (shape class); colour, size and position indices;
  centre (x, y) in [0, 1]; caption bytes such as b"a large red circle at the top left".
  """
  rng = np.random.default_rng(seed)
  colours = list(SHAPE_COLOURS)
  sizes = list(SHAPE_SIZES)
  n_pix = image_size * supersample
  # Pixel-centre coordinates of the supersampled grid, in units of output pixels.
  coords = (np.arange(n_pix) + 0.5) / supersample
  grid_x, grid_y = np.meshgrid(coords, coords)
  out = {k: np.zeros((num,), np.int64) for k in ("label", "colour", "size", "position")}
  out["image"] = np.zeros((num, image_size, image_size, 3), np.uint8)
  out["centre"] = np.zeros((num, 2), np.float32)
  captions = []
  for i in range(num):
    kind = int(rng.integers(len(SHAPE_CLASSES)))
    colour = int(rng.integers(len(colours)))
    size = int(rng.integers(len(sizes)))
    radius = SHAPE_SIZES[sizes[size]] * image_size * rng.uniform(0.92, 1.08)
    margin = radius + 0.5
    cx, cy = rng.uniform(margin, image_size - margin, size=2)
    mask = _shape_mask(SHAPE_CLASSES[kind], grid_x - cx, grid_y - cy, radius)
    coverage = mask.reshape(image_size, supersample, image_size, supersample).mean(axis=(1, 3))
    rgb = np.asarray(SHAPE_COLOURS[colours[colour]], np.float64)
    out["image"][i] = np.round(coverage[..., None] * rgb).astype(np.uint8)
    col = min(int(3 * cx / image_size), 2)
    row = min(int(3 * cy / image_size), 2)
    position = 3 * row + col
    out["label"][i], out["colour"][i], out["size"][i], out["position"][i] = kind, colour, size, position
    out["centre"][i] = (cx / image_size, cy / image_size)
    where = SHAPE_POSITIONS[position]
    phrase = "in the center" if where == "center" else f"at the {where}"
    captions.append(f"a {sizes[size]} {colours[colour]} {SHAPE_CLASSES[kind]} {phrase}".encode())
  out["caption"] = np.array(captions, dtype=object)
  return out


def toy2d(variant: str, num: int, seed: int = 0) -> dict[str, np.ndarray]:
  """2D points (N, 2) float32 and the index of the mixture component (-1 where none applies)."""
  rng = np.random.default_rng(seed)
  mode = np.full((num,), -1, np.int64)
  if variant == "ring8":
    mode = rng.integers(8, size=num)
    angle = 2 * np.pi * mode / 8
    centres = RING8_RADIUS * np.stack([np.cos(angle), np.sin(angle)], -1)
    points = centres + RING8_STD * rng.standard_normal((num, 2))
  elif variant == "grid25":
    mode = rng.integers(25, size=num)
    values = np.asarray(GRID25_VALUES)
    centres = np.stack([values[mode // 5], values[mode % 5]], -1)
    points = centres + GRID25_STD * rng.standard_normal((num, 2))
  elif variant == "moons":
    mode = rng.integers(2, size=num)  # which moon
    angle = rng.uniform(0, np.pi, size=num)
    upper = np.stack([np.cos(angle), np.sin(angle)], -1)
    lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], -1)
    points = np.where(mode[:, None] == 0, upper, lower) + 0.05 * rng.standard_normal((num, 2))
  elif variant == "swissroll":
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=num))
    points = np.stack([t * np.cos(t), t * np.sin(t)], -1) / 5.0 + 0.05 * rng.standard_normal((num, 2))
  elif variant == "checkerboard":
    x = rng.uniform(-2, 2, size=num)
    y = rng.uniform(0, 1, size=num) - 2 * rng.integers(2, size=num) + np.floor(x) % 2
    points = 2.0 * np.stack([x, y], -1)
  else:
    raise ValueError(f"toy2d has variants {TOY2D_VARIANTS}, not '{variant}'")
  return {"point": points.astype(np.float32), "mode": mode.astype(np.int64)}


def toy2d_mode_centres(variant: str) -> np.ndarray:
  """Mode centres of the Gaussian-mixture variants (used by mode-coverage metrics)."""
  if variant == "ring8":
    angle = 2 * np.pi * np.arange(8) / 8
    return RING8_RADIUS * np.stack([np.cos(angle), np.sin(angle)], -1)
  if variant == "grid25":
    values = np.asarray(GRID25_VALUES)
    return np.stack([np.repeat(values, 5), np.tile(values, 5)], -1)
  raise ValueError(f"'{variant}' is not a Gaussian mixture")


def toy2d_mode_std(variant: str) -> float:
  """Standard deviation of each component of the Gaussian-mixture variants."""
  stds = {"ring8": RING8_STD, "grid25": GRID25_STD}
  if variant not in stds:
    raise ValueError(f"'{variant}' is not a Gaussian mixture")
  return float(stds[variant])
