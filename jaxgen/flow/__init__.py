"""Rectified flow / flow matching: the objective, time sampling, straightness, likelihood,
reflow couplings and few-step distillation."""
