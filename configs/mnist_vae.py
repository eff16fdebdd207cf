"""The single-code baseline of mnist_hierarchy: the same encoder and decoder
networks, one 8-dimensional code (the ladder's 2 + 2 + 4) at the top, no
codes in the rungs below (configs/celeba_small_vae.py says why a config).

    python main.py --config=configs/mnist_vae.py --config.data_dir=../shared/data/mnist \
        --workdir=runs/mnist_vae
"""

from configs import mnist_hierarchy


def get_config():
  config = mnist_hierarchy.get_config()
  config.name = "mnist_vae"
  total = sum(config.model.latent_dims)
  config.model.latent_dims = (0,) * (len(config.model.latent_dims) - 1) + (
      total,)
  config.rung_start_steps = ()
  return config
