import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxgen.data import builtin, make_source, train_dataset
from jaxgen.data.tfds_store import prepared_source
from jaxgen.errors import DataError


def cfg(**kw):
  return ml_collections.ConfigDict({**dict(name="digits", image_size=8, channels=1, num_threads=1), **kw})


def test_toy2d_mixtures_have_the_published_geometry():
  ring = builtin.toy2d("ring8", 20000, seed=0)
  centres = builtin.toy2d_mode_centres("ring8")[ring["mode"]]
  np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-12)
  assert np.std(ring["point"] - centres) == pytest.approx(0.01, rel=0.05)
  grid = builtin.toy2d("grid25", 20000, seed=0)
  centres = builtin.toy2d_mode_centres("grid25")[grid["mode"]]
  assert set(np.unique(centres)) == {-4.0, -2.0, 0.0, 2.0, 4.0}
  assert np.std(grid["point"] - centres) == pytest.approx(0.05, rel=0.05)
  assert len(np.unique(grid["mode"])) == 25
  for variant in builtin.TOY2D_VARIANTS:
    pts = builtin.toy2d(variant, 100, seed=1)["point"]
    assert pts.shape == (100, 2) and np.isfinite(pts).all()
    np.testing.assert_array_equal(pts, builtin.toy2d(variant, 100, seed=1)["point"])


def test_shapes_are_deterministic_and_captions_match_labels():
  a = builtin.shapes(30, image_size=32, seed=3)
  b = builtin.shapes(30, image_size=32, seed=3)
  np.testing.assert_array_equal(a["image"], b["image"])
  assert not np.array_equal(a["image"], builtin.shapes(30, image_size=32, seed=4)["image"])
  for i in range(30):
    caption = a["caption"][i].decode()
    assert builtin.SHAPE_CLASSES[a["label"][i]] in caption
    assert list(builtin.SHAPE_COLOURS)[a["colour"][i]] in caption
    # The pixels carry the named colour: the brightest pixel is (close to) the palette colour.
    img = a["image"][i].reshape(-1, 3).astype(int)
    brightest = img[img.sum(1).argmax()]
    np.testing.assert_allclose(brightest, builtin.SHAPE_COLOURS[list(builtin.SHAPE_COLOURS)[a["colour"][i]]], atol=3)
    # The shape's centre of mass lies in the named third of the image.
    ys, xs = np.nonzero(a["image"][i].sum(-1))
    row, col = divmod(a["position"][i], 3)
    assert abs(xs.mean() / 32 - (col + 0.5) / 3) < 0.3 and abs(ys.mean() / 32 - (row + 0.5) / 3) < 0.3


def test_builtin_tfds_sources_and_preprocessing():
  src = make_source(cfg())
  assert len(src) == 1797 - builtin.DIGITS_TEST_SIZE
  assert len(make_source(cfg(), split="test")) == builtin.DIGITS_TEST_SIZE
  ds = train_dataset(cfg(image_size=16), seed=0, global_batch=8)
  batch = next(iter(ds))
  assert batch["image"].shape == (8, 16, 16, 1) and batch["image"].dtype == np.float32
  assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0 and batch["image"].max() > 0.9
  assert batch["label"].shape == (8,)
  toy = next(iter(train_dataset(cfg(name="toy2d", variant="grid25", num_examples=1000), seed=0, global_batch=4)))
  assert toy["point"].shape == (4, 2)


def test_pipeline_is_deterministic_resumable_and_shards_by_process():
  c = cfg()
  it = iter(train_dataset(c, seed=7, global_batch=12))
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  after = [next(it)["image"] for _ in range(2)]
  resumed = iter(train_dataset(c, seed=7, global_batch=12))
  resumed.set_state(state)
  for expected in after:
    np.testing.assert_array_equal(next(resumed)["image"], expected)
  again = iter(train_dataset(c, seed=7, global_batch=12))
  np.testing.assert_array_equal(next(again)["image"], first[0]["image"])
  other = iter(train_dataset(c, seed=8, global_batch=12))
  assert not np.array_equal(next(other)["image"], first[0]["image"])
  # Three processes' local batches concatenate to the single-process global batch.
  shards = [iter(train_dataset(c, seed=7, global_batch=12, process_index=p, process_count=3)) for p in range(3)]
  for expected in first:
    np.testing.assert_array_equal(np.concatenate([next(s)["image"] for s in shards]), expected["image"])
  # Epochs are reshuffled: 1500 examples per epoch, batches beyond the first epoch differ in order.
  with pytest.raises(DataError, match="divisible by the number of processes"):
    train_dataset(c, seed=7, global_batch=10, process_index=0, process_count=3)


def _write_png(path, size=(10, 6), colour=(200, 10, 10)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, colour).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
  for i in range(3):
    _write_png(tmp_path / "cats" / f"{i}.png", colour=(250, 0, 0))
    _write_png(tmp_path / "dogs" / f"{i}.jpg", colour=(0, 0, 250))
  c = cfg(name="folder", path=str(tmp_path), image_size=4, channels=3)
  src = make_source(c)
  assert src.class_names == ("cats", "dogs") and len(src) == 6
  batch = next(iter(train_dataset(c, seed=0, global_batch=6)))
  assert batch["image"].shape == (6, 4, 4, 3)
  for image, label in zip(batch["image"], batch["label"]):
    red, blue = image[..., 0].mean(), image[..., 2].mean()
    assert (red > blue) == (label == 0)


def test_image_folder_errors_name_the_problem(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    make_source(cfg(name="folder", path=str(tmp_path / "missing")))
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="holds no PNG or JPEG"):
    make_source(cfg(name="folder", path=str(tmp_path / "empty")))
  _write_png(tmp_path / "mixed" / "good.png")
  (tmp_path / "mixed" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
  with pytest.raises(DataError, match="broken.png"):
    make_source(cfg(name="folder", path=str(tmp_path / "mixed")))


def test_prepared_tfds_dataset_is_read_and_missing_one_explained(tmp_path):
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core import registered

  with registered.skip_registration():
    class TinyMnistLike(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version("1.0.0")

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64)}))

      def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20)}

      def _generate_examples(self, n):
        for i in range(n):
          yield i, {"image": np.full((4, 4, 1), 10 * i, np.uint8), "label": i % 10}

  TinyMnistLike(data_dir=str(tmp_path)).download_and_prepare(file_format="array_record")
  c = cfg(name="tfds", tfds_name="tiny_mnist_like", data_dir=str(tmp_path), image_size=4)
  batch = next(iter(train_dataset(c, seed=0, global_batch=20)))
  # Every example arrives once per epoch, scaled to [-1, 1].
  np.testing.assert_allclose(np.sort(batch["image"][:, 0, 0, 0]), np.arange(20) * 10 / 127.5 - 1, atol=1e-6)
  with pytest.raises(DataError, match="no split 'test'"):
    prepared_source("tiny_mnist_like", "test", tmp_path)
  with pytest.raises(DataError, match="not prepared.*download_and_prepare"):
    make_source(cfg(name="tfds", tfds_name="mnist", data_dir=str(tmp_path)))


def test_builtin_dataset_prepared_by_another_process_meanwhile_is_read(tmp_path):
  # Two runs starting together on one data dir: the second waits on the preparation lock while
  # the first writes the dataset, and must then read what was written (array_record), not the
  # empty folder it would have seen before the lock.
  import threading
  import time
  from jaxgen.data import tfds_store
  from jaxgen.locks import file_lock
  import tensorflow_datasets as tfds
  result = {}
  def second_run():
    try:
      result["len"] = len(tfds_store.builtin_builder("toy2d", tmp_path, num=40, variant="ring8")
                          .as_data_source(split="train"))
    except Exception as e:  # surfaced in the assertion below
      result["error"] = e
  with file_lock(tmp_path / ".toy2d.lock"):
    waiter = threading.Thread(target=second_run)
    waiter.start()
    time.sleep(1.0)  # the second run is now blocked on the lock
    _, _, toy_cls = tfds_store._builder_classes()
    first = toy_cls(data_dir=str(tmp_path), config=tfds.core.BuilderConfig(name="ring8_n40_seed0"))
    first.download_and_prepare(file_format="array_record")
  waiter.join(timeout=120)
  assert result == {"len": 40}
