"""CelebA at 32x32 and half the reference widths: the variant that trains on a CPU.

    python main.py --config=configs/celeba_small.py --config.data_dir=../shared/data/celeba \
        --config.max_train_minutes=60 --workdir=runs/celeba_small

Same ladder as celeba.py (4 rungs of 10 dims, concat combine) with channels
32, 64-128, 256 and a dense 512, on 32x32 faces (about 16x fewer FLOPs per
step than celeba.py; the paper's claims are about rungs, not detail). From
the CelebA recipe screens (docs/FIDELITY.md), all about using every rung:
- trained from the bottom up: rung 0 alone for 600 steps (time to take the
  overall lighting before a rung above can), then each rung above it fading
  in over 150 steps (all in from step 1,050);
- every rung's posterior std capped at 0.5 (model.rung_std_ceilings): a
  rung cannot then satisfy its MMD term by collapsing onto the prior (mean
  0, std 1), which is what the bottom rung did at MMD weight 100 with the
  std free; its means must spread, i.e. carry the image, so every rung
  reaches the decoded faces.
"""

from configs import celeba


def get_config():
  config = celeba.get_config()
  config.name = "celeba_small"
  config.image_size = 32
  config.model.rung_widths = ((32,), (64, 128), (256,), (512,))
  config.model.rung_std_ceilings = (0.5, 0.5, 0.5, 0.5)
  config.learning_rate = 5e-4
  config.rung_start_steps = (0, 600, 750, 900)
  config.rung_fade_steps = 150
  config.num_train_steps = 100000  # --config.max_train_minutes ends a CPU run
  config.log_every = 100
  config.checkpoint_every = 500
  config.eval_every = 1000
  config.image_every = 1000
  return config
