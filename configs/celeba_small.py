"""CelebA 64x64 at half the reference widths: the variant that trains on a CPU.

    python main.py --config=configs/celeba_small.py --config.data_dir=../shared/data/celeba \
        --config.max_train_minutes=60 --workdir=runs/celeba_small

Same ladder as celeba.py (4 rungs of 10 dims, concat combine) with channels
32, 64-128, 256 and a dense 512: about 4x fewer FLOPs per step. Two changes
from the CelebA recipe screen (docs/FIDELITY.md), both about the bottom rung,
which the decoder otherwise ignores (resampling it moved the decoded faces'
pixels by 0.006 on average against 0.15 for rung 1):
- trained from the bottom up: rung 0 alone first, then each rung above it
  fading in over 150 steps (all in from step 600), so the bottom rung takes
  what explains the most pixels (lighting, colour balance) before the rungs
  above can;
- the bottom rung's MMD weight 1 instead of 100: at 100 its MMD term was the
  largest part of the early loss (0.41 x 100 against a reconstruction term of
  19), and its codes collapsed to the prior.
"""

from configs import celeba


def get_config():
  config = celeba.get_config()
  config.name = "celeba_small"
  config.model.rung_widths = ((32,), (64, 128), (256,), (512,))
  config.learning_rate = 5e-4
  config.rung_start_steps = (0, 150, 300, 450)
  config.rung_fade_steps = 150
  config.loss.rung_mmd_weights = (1.0, 100.0, 100.0, 100.0)
  config.num_train_steps = 100000  # --config.max_train_minutes ends a CPU run
  config.log_every = 100
  config.checkpoint_every = 500
  config.eval_every = 1000
  config.image_every = 1000
  return config
