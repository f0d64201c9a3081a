"""Joining a multi-process run (several hosts, or several processes on one host)."""

from __future__ import annotations

import os

import jax

from jaxgen.errors import ConfigError

ENV = {"coordinator": "JAXGEN_COORDINATOR_ADDRESS", "num_processes": "JAXGEN_NUM_PROCESSES",
       "process_id": "JAXGEN_PROCESS_ID"}


def maybe_initialize(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, timeout_s: int = 120) -> bool:
  """Calls jax.distributed.initialize when a coordinator is given (flags win over environment).

  Must run before anything touches a JAX backend. Returns whether a multi-process run was joined.
  """
  coordinator = coordinator or os.environ.get(ENV["coordinator"])
  if num_processes is None and os.environ.get(ENV["num_processes"]):
    num_processes = int(os.environ[ENV["num_processes"]])
  if process_id is None and os.environ.get(ENV["process_id"]):
    process_id = int(os.environ[ENV["process_id"]])
  if not coordinator:
    if num_processes not in (None, 1):
      raise ConfigError("A multi-process run needs --coordinator HOST:PORT "
                        f"(or ${ENV['coordinator']}) as well as --num-processes and --process-id.")
    return False
  if num_processes is None or process_id is None:
    raise ConfigError(f"--coordinator {coordinator} needs --num-processes and --process-id "
                      f"(or ${ENV['num_processes']} and ${ENV['process_id']}).")
  if not 0 <= process_id < num_processes:
    raise ConfigError(f"--process-id {process_id} must lie in [0, {num_processes}).")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id, initialization_timeout=timeout_s)
  return True
