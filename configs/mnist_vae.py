"""The single-code baseline of mnist_hierarchy: the same encoder and decoder
networks, one 8-dimensional code (the ladder's 2 + 2 + 4) at the top, no
codes in the rungs below (configs/celeba_small_vae.py says why a config).

    python main.py --config=configs/mnist_vae.py --config.data_dir=../shared/data/mnist \
        --workdir=runs/mnist_vae
"""

from configs import mnist_hierarchy
from configs.celeba_small_vae import one_code


def get_config():
  return one_code(mnist_hierarchy.get_config(), "mnist_vae")
