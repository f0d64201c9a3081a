"""flax.linen building blocks and backbones."""
