"""Frozen: the config of the CelebA claims of round 16 (README,
results/README.md: celeba_small_branches600_dim7_ceil0.25 seeds 0, 1, 2 at
24,000 steps): the recipe of configs/published/celeba_small_24000.py with the
reference's ladder branches, rung 0 alone for 600 steps (rungs entering 0, 2,
3, 1), a 7-D rung 0 and rung 0's posterior std capped at 0.25, chosen on
validation faces (docs/FIDELITY.md, rounds 6-16). As bench/recipe_study.py
trained it: a log line every 500 steps, no in-training evaluation, a
checkpoint every 2,000. Each run's own config.json under results/ equals
this one but for ``seed`` and ``data_dir`` (tests/test_recipes.py).

    python main.py --config=configs/published/celeba_small_branches_ceil_24000.py \
        --config.data_dir=../shared/data/celeba --config.seed=0 --workdir=runs/celeba_small_branches_ceil_seed0
"""

import ml_collections

CONFIG = {'batch_size': 100,
 'cache_dir': '',
 'channels': 0,
 'checkpoint_every': 2000,
 'data_dir': '',
 'dataset': 'celeba',
 'decode_workers': 0,
 'deterministic': True,
 'dtype': 'float32',
 'eval_every': 1000000,
 'image_every': 1000000,
 'image_size': 32,
 'keep_checkpoint_every': 0,
 'keep_checkpoints': 3,
 'labels_file': '',
 'learning_rate': 0.0005,
 'log_every': 500,
 'loss': {'estimator': 'biased',
          'kernel': 'reference',
          'kl_warmup_steps': 0,
          'kl_weight': 1.0,
          'mmd_weight': 100.0,
          'num_prior_samples': 0,
          'rec_weight': 100.0,
          'reconstruction': 'l1',
          'regularizer': 'mmd',
          'rung_kl_weights': (),
          'rung_mmd_weights': ()},
 'max_train_minutes': 0.0,
 'model': {'activation': 'leaky_relu',
           'combine': 'concat',
           'decoder_activation': '',
           'downsample': 'auto',
           'head_branches': True,
           'latent_dims': (7, 10, 10, 10),
           'matmul': 'auto',
           'norm': 'batch',
           'rung_kinds': ('conv', 'conv', 'conv', 'dense'),
           'rung_std_ceilings': (0.25, 0.5, 0.5, 0.5),
           'rung_std_floors': (),
           'rung_strides': ((2, 1), (), (), ()),
           'rung_widths': ((32, 32), (64, 128), (256,), (512,)),
           'std_floor': 0.001,
           'upsample': 'auto'},
 'name': 'celeba_small',
 'num_eval_batches': 0,
 'num_train_steps': 24000,
 'rung_fade_steps': 150,
 'rung_start_steps': (0, 900, 600, 750),
 'seed': 0,
 'skip_nonfinite': False,
 'test_fraction': 0.0,
 'tfds_data_dir': '',
 'validation_size': 0,
 'warmup_steps': 0}


def get_config():
  return ml_collections.ConfigDict(CONFIG)
