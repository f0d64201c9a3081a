"""Errors a user can fix, as opposed to bugs.

A `UserError` carries a one-paragraph message that names the problem and the fix. The CLI prints it
and exits with code 2 instead of showing a traceback; library callers can catch it like any
exception.
"""


class UserError(Exception):
  """Bad input (config, data, checkpoint, ...): the message says what is wrong and how to fix it."""


class ConfigError(UserError):
  """A config key is unknown, ill-typed or has an invalid value."""


class DataError(UserError):
  """A dataset is missing, empty or corrupt."""


class CheckpointError(UserError):
  """A checkpoint is corrupt or does not fit the config."""


class NonFiniteLossError(UserError):
  """Training produced a NaN or infinite loss."""

  def __init__(self, step: int, message: str):
    super().__init__(message)
    self.step = step
