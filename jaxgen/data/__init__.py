"""Datasets (builtin offline sets, prepared TFDS sets, image folders) and grain pipelines."""

from jaxgen.data.pipeline import data_config, eval_arrays, make_source, train_dataset

__all__ = ["data_config", "eval_arrays", "make_source", "train_dataset"]
