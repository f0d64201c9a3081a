"""GANs: adversarial objectives and penalties (`losses`), the two-player step (`step`), and the
method the training engine runs (`method`). The networks live in jaxgen.nn.gan and jaxgen.nn.stylegan."""
