"""Improved DDPM on digits (Nichol & Dhariwal 2021): cosine schedule, learned reverse variance
(log-variance interpolated between beta_t and betatilde_t) trained by the hybrid loss
L_simple + 0.001 L_vlb, and sampling with the learned variance. The U-Net is ddpm_digits.py's, with
twice the output channels."""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_digits.py"))
  c.diffusion.schedule = "cosine"
  c.diffusion.learn_variance = True
  c.diffusion.vlb_weight = 1e-3
  c.sample.variance = "learned"
  return c
