"""TFDS storage: the builtin datasets written once as array_record, and prepared TFDS datasets read.

Builtin datasets are generated locally (see `builtin.py`) and written with TFDS `Tensor` features in
the array_record format, which needs no TensorFlow; `tfds` random-access data sources read them
back. Preparation takes a file lock so that several processes of one run can share a data dir.

Prepared datasets are located on disk before TFDS is asked to open them: `tfds.data_source` on a
missing dataset would try to download it, and nothing can be downloaded on an offline machine.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxgen.data import builtin
from jaxgen.errors import DataError
from jaxgen.locks import file_lock


def default_data_dir() -> pathlib.Path:
  """`$JAXGEN_DATA_DIR`, else `~/.cache/jaxgen/tensorflow_datasets`."""
  env = os.environ.get("JAXGEN_DATA_DIR")
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "jaxgen" / "tensorflow_datasets"


def _builder_classes():
  """Defines the builder classes on first use (importing TFDS costs time; most commands skip it)."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core import registered

  if "JaxgenDigits" in globals():
    return globals()["JaxgenDigits"], globals()["JaxgenShapes"], globals()["JaxgenToy2d"]

  def generate(arrays: dict[str, np.ndarray]):
    n = len(next(iter(arrays.values())))
    for i in range(n):
      yield i, {k: v[i] for k, v in arrays.items()}

  # Registering would make TFDS treat these as its own catalogue entries; they are local builders.
  with registered.skip_registration():

    class JaxgenDigits(tfds.core.GeneratorBasedBuilder):
      """scikit-learn's 8x8 digits; train = first 1500, test = last 297."""
      VERSION = tfds.core.Version("1.0.0")

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
        }))

      def _split_generators(self, dl_manager):
        return {s: self._generate_examples(s) for s in ("train", "test")}

      def _generate_examples(self, split):
        yield from generate(builtin.digits(split))

    class JaxgenShapes(tfds.core.GeneratorBasedBuilder):
      """Procedural coloured shapes; config name `size{S}_n{N}_seed{K}`."""
      VERSION = tfds.core.Version("1.0.0")

      def _params(self):
        size, num, seed = (int(p[len(k):]) for p, k in
                           zip(self.builder_config.name.split("_"), ("size", "n", "seed")))
        return size, num, seed

      def _info(self):
        size, _, _ = self._params()
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
            "colour": tfds.features.Tensor(shape=(), dtype=np.int64),
            "size": tfds.features.Tensor(shape=(), dtype=np.int64),
            "position": tfds.features.Tensor(shape=(), dtype=np.int64),
            "centre": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "caption": tfds.features.Text(),
        }))

      def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

      def _generate_examples(self, split):
        size, num, seed = self._params()
        # Disjoint streams for the two splits; test is a fifth of train.
        count, stream = (num, 2 * seed) if split == "train" else (max(num // 5, 1), 2 * seed + 1)
        arrays = builtin.shapes(count, image_size=size, seed=stream)
        arrays["caption"] = np.array([c.decode() for c in arrays["caption"]], dtype=object)
        yield from generate(arrays)

    class JaxgenToy2d(tfds.core.GeneratorBasedBuilder):
      """2D point clouds; config name `{variant}_n{N}_seed{K}`."""
      VERSION = tfds.core.Version("1.0.0")

      def _params(self):
        variant, num, seed = self.builder_config.name.split("_")
        return variant, int(num[1:]), int(seed[4:])

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "point": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "mode": tfds.features.Tensor(shape=(), dtype=np.int64),
        }))

      def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

      def _generate_examples(self, split):
        variant, num, seed = self._params()
        count, stream = (num, 2 * seed) if split == "train" else (max(num // 5, 1), 2 * seed + 1)
        yield from generate(builtin.toy2d(variant, count, seed=stream))

  globals().update(JaxgenDigits=JaxgenDigits, JaxgenShapes=JaxgenShapes, JaxgenToy2d=JaxgenToy2d)
  return JaxgenDigits, JaxgenShapes, JaxgenToy2d


def builtin_builder(name: str, data_dir: pathlib.Path, *, image_size: int = 32, num: int = 0,
                    seed: int = 0, variant: str = "ring8"):
  """Returns the TFDS builder of a builtin dataset, preparing it on first use."""
  import tensorflow_datasets as tfds
  digits_cls, shapes_cls, toy_cls = _builder_classes()
  if name == "digits":
    cls, config = digits_cls, None
  elif name == "shapes":
    cls, config = shapes_cls, tfds.core.BuilderConfig(name=f"size{image_size}_n{num or 20000}_seed{seed}")
  elif name == "toy2d":
    if variant not in builtin.TOY2D_VARIANTS:
      raise DataError(f"toy2d has no variant '{variant}'. Set data.variant to one of "
                      f"{', '.join(builtin.TOY2D_VARIANTS)}.")
    cls, config = toy_cls, tfds.core.BuilderConfig(name=f"{variant}_n{num or 50000}_seed{seed}")
  else:
    raise DataError(f"'{name}' is not a builtin dataset (digits, shapes, toy2d).")
  # The builder is made under the lock: one made while another process is preparing the dataset
  # reads the unfinished folder, keeps TFDS's default file format (tfrecord) and then cannot open
  # the array_record files that process wrote.
  with file_lock(pathlib.Path(data_dir) / f".{name}.lock"):
    builder = cls(data_dir=str(data_dir), config=config)
    if not builder.is_prepared():
      tfds.disable_progress_bar()
      builder.download_and_prepare(file_format="array_record")
  return builder


def find_prepared(name: str, data_dir: pathlib.Path) -> pathlib.Path:
  """The directory holding `dataset_info.json` of a prepared TFDS dataset.

  `name` may carry a config and a version (`celeb_a`, `cifar10:3.0.2`, `my_ds/config:1.0.0`);
  without a version the newest prepared one is used.
  """
  base, _, version = name.partition(":")
  root = pathlib.Path(data_dir) / base
  how_to = (f"Prepare it where it can be downloaded, in the array_record format, e.g. "
            f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{base}', "
            f"data_dir='DIR').download_and_prepare(file_format='array_record')\"` (or "
            f"`tfds build {base} --file_format=array_record --data_dir DIR`), then copy DIR here "
            f"and set data.data_dir to it (or $JAXGEN_DATA_DIR).")
  if version:
    candidates = [root / version]
  else:
    candidates = sorted((p for p in root.glob("*") if p.is_dir() and p.name[:1].isdigit()),
                        key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()))
  candidates = [c for c in candidates if (c / "dataset_info.json").is_file()]
  if not candidates:
    raise DataError(f"TFDS dataset '{name}' is not prepared in '{data_dir}'. {how_to}")
  return candidates[-1]


def prepared_source(name: str, split: str, data_dir: pathlib.Path):
  """Random-access source over a prepared TFDS dataset (array_record files)."""
  import tensorflow_datasets as tfds
  path = find_prepared(name, data_dir)
  builder = tfds.builder_from_directory(str(path))
  if split not in builder.info.splits:
    raise DataError(f"TFDS dataset '{name}' has no split '{split}' (it has "
                    f"{', '.join(builder.info.splits)}). Set data.split accordingly.")
  file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
  if file_format != "array_record":
    raise DataError(f"TFDS dataset '{name}' in '{path}' is stored as {builder.info.file_format}, "
                    "which needs TensorFlow to read. Prepare it with file_format='array_record'.")
  return builder.as_data_source(split=split)
