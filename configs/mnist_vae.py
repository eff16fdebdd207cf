"""The single-code baseline of the MNIST ladder the ablation measures
(configs/published/mnist_hierarchy_6939.py, the ladder the KL runs share):
the same encoder and decoder networks, one 8-dimensional code (the
ladder's 2 + 2 + 4) at the top, no codes in the rungs below
(configs/celeba_small_vae.py says why a config). Frozen on that ladder, not
configs/mnist_hierarchy.py, so a later recipe change cannot change what
its published run means.

    python main.py --config=configs/mnist_vae.py --config.data_dir=../shared/data/mnist \
        --workdir=runs/mnist_vae
"""

from configs.celeba_small_vae import one_code
from configs.published import mnist_hierarchy_6939


def get_config():
  return one_code(mnist_hierarchy_6939.get_config(), "mnist_vae")
