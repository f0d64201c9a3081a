"""Coupling datasets: (noise, sample) pairs written by a trained model, read back as training data.

On disk, a directory:
- `couplings.json`: format, the example shape and field ('image' or 'point'), the total number,
  the shard size, whether labels are stored, and `source` (what wrote it: run, step, sampler, seed,
  and the data section of the real dataset behind it, which evaluation compares against);
- `shard_00000/`, `shard_00001/`, ...: `noise.npy`, `data.npy` (float32, [n, ...]) and `label.npy`
  (int32) when present. A shard directory is written under a temporary name and renamed into
  place, so a shard that exists is complete: a killed writer resumes at the first missing shard.
Arrays are opened memory-mapped (`np.load(mmap_mode='r')`, no pickle), so a dataset larger than
memory trains like any other source.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np

from jaxgen.errors import DataError

FORMAT = "jaxgen-couplings-v1"
META = "couplings.json"


def shard_dir(root: pathlib.Path, index: int) -> pathlib.Path:
  return root / f"shard_{index:05d}"


def num_shards(num: int, shard_size: int) -> int:
  return -(-num // shard_size)


def read_meta(root: str | pathlib.Path) -> dict:
  path = pathlib.Path(root) / META
  if not path.is_file():
    raise DataError(f"'{root}' is not a coupling dataset (no {META}). Write one with "
                    "`jaxgen reflow --workdir RUN --out DIR`, then set data.path=DIR.")
  try:
    meta = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise DataError(f"'{path}' is not valid JSON ({e}); the coupling dataset is damaged. Write it "
                    "again with `jaxgen reflow` into a new directory.") from None
  if meta.get("format") != FORMAT:
    raise DataError(f"'{path}' has format '{meta.get('format')}', not '{FORMAT}'.")
  return meta


def original_data(data_cfg):
  """The data section of the dataset a coupling dataset descends from (through any number of
  reflows), for evaluation against real data; other data sections are returned as they are."""
  import ml_collections
  if data_cfg.name != "couplings":
    return data_cfg
  return ml_collections.ConfigDict(read_meta(data_cfg.path)["source"]["data"])


def start_writing(root: str | pathlib.Path, meta: dict) -> list[int]:
  """Creates (or checks, when resuming) the dataset's metadata; returns the shards still missing.
  Resuming with different settings would mix two couplings, so it is refused."""
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  meta = dict(meta, format=FORMAT)
  path = root / META
  if path.exists():
    old = read_meta(root)
    if old != meta:
      changed = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
      raise DataError(f"'{root}' holds couplings written with other settings (differing: "
                      f"{', '.join(changed)}). Use a new --out directory, or the same settings to "
                      "resume.")
  else:
    tmp = root / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, path)
  for stale in root.glob("shard_*.tmp"):
    shutil.rmtree(stale)  # a shard a killed writer left half-written
  return [i for i in range(num_shards(meta["num"], meta["shard_size"]))
          if not shard_dir(root, i).is_dir()]


def write_shard(root: str | pathlib.Path, index: int, noise: np.ndarray, data: np.ndarray,
                labels: np.ndarray | None = None) -> None:
  root = pathlib.Path(root)
  final = shard_dir(root, index)
  tmp = final.with_name(final.name + ".tmp")
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir()
  np.save(tmp / "noise.npy", np.asarray(noise, np.float32))
  np.save(tmp / "data.npy", np.asarray(data, np.float32))
  if labels is not None:
    np.save(tmp / "label.npy", np.asarray(labels, np.int32))
  os.replace(tmp, final)


class CouplingSource:
  """Random access to a complete coupling dataset: record i = {'noise', field[, 'label']}."""

  def __init__(self, root: str | pathlib.Path):
    self.root = pathlib.Path(root)
    self.meta = read_meta(self.root)
    self.field = self.meta["field"]
    self.shard_size = self.meta["shard_size"]
    self._num = self.meta["num"]
    missing = [i for i in range(num_shards(self._num, self.shard_size))
               if not shard_dir(self.root, i).is_dir()]
    if missing:
      raise DataError(f"The coupling dataset '{root}' is incomplete: {len(missing)} shard(s) missing "
                      f"(first: {missing[0]}). Run the same `jaxgen reflow` command again to finish it.")
    self._arrays: dict[int, dict[str, np.ndarray]] = {}

  def _shard(self, index: int) -> dict[str, np.ndarray]:
    if index not in self._arrays:
      d = shard_dir(self.root, index)
      names = ("noise", "data", "label") if self.meta.get("labels") else ("noise", "data")
      try:
        self._arrays[index] = {n: np.load(d / f"{n}.npy", mmap_mode="r", allow_pickle=False)
                               for n in names}
      except (OSError, ValueError) as e:
        raise DataError(f"Shard {d} of the coupling dataset cannot be read ({e}). Delete that "
                        "shard directory and run `jaxgen reflow` again to rewrite it.") from None
    return self._arrays[index]

  def __len__(self) -> int:
    return self._num

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    shard, row = divmod(int(index), self.shard_size)
    arrays = self._shard(shard)
    record = {"noise": np.array(arrays["noise"][row]), self.field: np.array(arrays["data"][row])}
    if "label" in arrays:
      record["label"] = np.array(arrays["label"][row])
    return record

  def __getstate__(self):  # grain may copy sources into worker threads/processes
    return {"root": self.root}

  def __setstate__(self, state):
    self.__init__(state["root"])
