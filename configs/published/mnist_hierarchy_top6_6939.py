"""Frozen: the config of the published MNIST claims from 2026-12-05 until
an 8-D top rung replaced it (configs/published/mnist_hierarchy_top8_6939.py;
results/README.md: mnist_hierarchy_top6 seeds 0, 1, 2 at 6,939
steps with 5,000 train digits held out for validation), whatever
configs/mnist_hierarchy.py becomes:
configs/published/mnist_hierarchy_ceil_6939.py with a 6-D top rung, the try
chosen on the validation digits (bench/recipe_study.py's
`mnist_hierarchy_ceil0.5_top6` row, which trained these runs: hence its
bookkeeping, no evaluation or images during training and a progress line
every 500 steps). Each run's own config.json under results/ equals this one
but for ``seed`` and ``data_dir`` (tests/test_recipes.py).

    python main.py --config=configs/published/mnist_hierarchy_top6_6939.py \
        --config.data_dir=../shared/data/mnist --config.seed=0 --workdir=runs/mnist_hierarchy_top6_seed0
"""

import ml_collections

CONFIG = {'batch_size': 100,
 'cache_dir': '',
 'channels': 0,
 'checkpoint_every': 2000,
 'data_dir': '',
 'dataset': 'mnist',
 'decode_workers': 0,
 'deterministic': True,
 'dtype': 'float32',
 'eval_every': 1000000,
 'image_every': 1000000,
 'image_size': 64,
 'keep_checkpoint_every': 0,
 'keep_checkpoints': 3,
 'labels_file': '',
 'learning_rate': 0.001,
 'log_every': 500,
 'loss': {'estimator': 'biased',
          'kernel': 'reference',
          'kl_warmup_steps': 0,
          'kl_weight': 1.0,
          'mmd_weight': 100.0,
          'num_prior_samples': 0,
          'rec_weight': 100.0,
          'reconstruction': 'bernoulli',
          'regularizer': 'mmd',
          'rung_kl_weights': (),
          'rung_mmd_weights': ()},
 'max_train_minutes': 0.0,
 'model': {'activation': 'leaky_relu',
           'combine': 'gated_sum',
           'decoder_activation': '',
           'downsample': 'auto',
           'head_branches': False,
           'latent_dims': (2, 2, 6),
           'matmul': 'auto',
           'norm': 'batch',
           'rung_kinds': ('conv', 'dense', 'dense'),
           'rung_std_ceilings': (0.5, 0.5, 0.5),
           'rung_std_floors': (),
           'rung_strides': (),
           'rung_widths': ((64, 128), (1024, 1024), (1024, 1024)),
           'std_floor': 0.001,
           'upsample': 'auto'},
 'name': 'mnist',
 'num_eval_batches': 0,
 'num_train_steps': 6939,
 'rung_fade_steps': 200,
 'rung_start_steps': (400, 0, 800),
 'seed': 0,
 'skip_nonfinite': False,
 'test_fraction': 0.0,
 'tfds_data_dir': '',
 'validation_size': 5000,
 'warmup_steps': 0}


def get_config():
  return ml_collections.ConfigDict(CONFIG)
