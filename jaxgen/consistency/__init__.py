"""Consistency models: distillation from a diffusion model and training from scratch."""
