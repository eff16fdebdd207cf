"""CelebA 64x64 with the reference code's networks and training layer for layer.

    python main.py --config=configs/celeba_reference.py --config.data_dir=/path/to/celeba --workdir=runs/celeba_reference

../shared/REFERENCE.md: each rung has a ladder branch with its own weights
beside the inference branch (``model.head_branches``), stride-1 convs between
the stride-2 ones (``model.rung_strides``), a dense stack at the top and plain
ReLU in the decoder (``model.decoder_activation``); Adam 2e-4, every rung
from step 0, the std free (none of configs/celeba.py's recipe). About 2.7x
the useful FLOPs of configs/celeba.py per step (789 vs 297 GFLOP at batch
100, vlae_jax.flops).
"""

from configs import celeba


def get_config():
  config = celeba.get_config()
  config.name = "celeba_reference"
  config.model.rung_kinds = ("conv", "conv", "conv", "dense")
  config.model.rung_widths = ((64, 64), (128, 128, 256), (256, 512, 512),
                              (1024, 1024))
  config.model.rung_strides = ((2, 1), (2, 1, 2), (1, 2, 1), ())
  config.model.head_branches = True
  config.model.decoder_activation = "relu"
  config.model.rung_std_ceilings = ()
  config.learning_rate = 2e-4
  config.warmup_steps = 0  # the reference's plain Adam
  config.rung_start_steps = ()
  config.rung_fade_steps = 0
  return config
