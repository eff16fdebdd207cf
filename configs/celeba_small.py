"""CelebA 64x64 at half the reference widths: the variant that trains on a CPU.

    python main.py --config=configs/celeba_small.py --config.data_dir=/path/to/celeba

Same ladder as celeba.py (4 rungs of 10 dims, concat combine) with channels
32, 64-128, 256 and a dense 512: about 4x fewer FLOPs per step.
"""

from configs import celeba


def get_config():
  config = celeba.get_config()
  config.name = "celeba_small"
  config.model.rung_widths = ((32,), (64, 128), (256,), (512,))
  config.learning_rate = 5e-4
  config.num_train_steps = 2500
  config.log_every = 50
  config.checkpoint_every = 500
  config.eval_every = 500
  config.image_every = 500
  return config
