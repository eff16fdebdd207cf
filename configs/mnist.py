"""MNIST, the reference VLAE architecture (3 rungs of 2 dims, gated sum).

    python main.py --config=configs/mnist.py --config.data_dir=../shared/data/mnist \
        --config.max_train_minutes=30 --workdir=runs/mnist30
    (or without data_dir: TFDS downloads MNIST)

About 3.7 steps/s on 2 CPU cores (docs/PERFORMANCE.md, "Train step"), so the
20,000 steps of num_train_steps take about 1.5 hours (the paper trained about
1 hour on a GTX 1080 Ti). configs/mnist_hierarchy.py (the std ceiling, an 8-D
top rung, the middle rung trained first) is the recipe whose claims are
published: each claim in its rung in 3 of 3 seeds, top-rung digit kNN
0.857-0.899 (test; docs/FIDELITY.md).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "mnist"
  config.dataset = "mnist"
  config.model.latent_dims = (2, 2, 2)
  config.model.rung_kinds = ("conv", "dense", "dense")
  config.model.rung_widths = ((64, 128), (1024, 1024), (1024, 1024))
  config.model.combine = "gated_sum"
  # The recipe study (docs/FIDELITY.md): Bernoulli reconstruction and Adam
  # 1e-3 place thickness, inclination and identity in the rungs the paper
  # names; the reference's L1 and 2e-4 leave thickness in the middle rung.
  config.loss.reconstruction = "bernoulli"
  config.learning_rate = 1e-3
  config.num_train_steps = 20000
  config.checkpoint_every = 2000
  config.eval_every = 2000
  config.image_every = 2000
  return config
