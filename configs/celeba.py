"""CelebA 64x64, the reference VLAE architecture (4 rungs of 10 dims, concat).

    python main.py --config=configs/celeba.py --workdir=runs/celeba
    python main.py --config=configs/celeba.py --config.data_dir=/path/to/celeba

Without data_dir, TFDS downloads celeb_a. The paper trained about 8 hours on a
GTX 1080 Ti.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "celeba"
  config.dataset = "celeba"
  config.image_size = 64
  config.model.latent_dims = (10, 10, 10, 10)
  config.model.rung_kinds = ("conv", "conv", "conv", "dense")
  config.model.rung_widths = ((64,), (128, 256), (512,), (1024,))
  config.model.combine = "concat"
  config.learning_rate = 2e-4
  config.num_train_steps = 100000
  config.checkpoint_every = 2000
  config.eval_every = 2000
  config.image_every = 2000
  return config
