"""Class-conditional DDPM on shapes 16x16 with classifier-free guidance (Ho & Salimans 2021).

The cosine / v-prediction setup of ddpm_shapes_cosine_v.py, plus a class embedding (6 shape classes
and a null class) added to the time embedding, with the label replaced by the null class for 10% of
the training examples. Sample with `jaxgen sample --workdir DIR --num 48 --guidance 3`: row r of the
8-wide grid is class r (circle, square, triangle, diamond, cross, ring); w = 0 is the unconditional
model, w = 1 the conditional one, w > 1 guided.
"""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_shapes_cosine_v.py"))
  c.model.num_classes = 6
  c.diffusion.label_dropout = 0.1
  c.sample.guidance = 1.0
  return c
