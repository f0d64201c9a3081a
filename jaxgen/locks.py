"""Cross-process coordination on a shared directory: an exclusive file lock, and atomic file writes.

Several processes may share one data dir or cache (the processes of one multi-host run on a machine,
parallel evaluation jobs, test workers): whoever takes the lock first prepares or trains the shared
thing, the others wait and then find it ready. Writes go to a file unique to the writer and are
renamed into place, so a reader never sees a half-written file even without the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib


@contextlib.contextmanager
def file_lock(path: pathlib.Path):
  """Holds an exclusive lock on PATH (created with its parents) for the block."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def private_temp_path(path: pathlib.Path, suffix: str = ".tmp") -> pathlib.Path:
  """A sibling of PATH that no other writing process uses (named by the process id)."""
  path = pathlib.Path(path)
  return path.with_name(f"{path.name}.{os.getpid()}{suffix}")
