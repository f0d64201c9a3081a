"""Datasets (builtin offline sets, prepared TFDS sets, image folders) and grain pipelines."""

from jaxgen.data.pipeline import eval_batches, make_source, train_dataset

__all__ = ["eval_batches", "make_source", "train_dataset"]
