"""The single-code baseline of the CelebA ladder the ablation measures
(configs/published/celeba_small_8086.py, the ladder the KL runs share):
the same encoder and decoder networks, one 40-dimensional code (the
ladder's 4 x 10) at the top, no codes in the rungs below (an MMD-VAE, the
paper's starting point). Frozen on that ladder, not configs/celeba_small.py,
so a later recipe or budget change cannot change what its published runs
mean.

    python main.py --config=configs/celeba_small_vae.py --config.data_dir=../shared/data/celeba \
        --workdir=runs/celeba_small_vae

"What the ladder adds" is then one --config away: the rungs below the top
keep their layers (h_l = f_l(h_{l-1}) in the encoder, the mirrored layers in
the decoder) but have ``latent_dims`` 0, so the image reaches the code only
through the whole stack, as in a plain VAE. A config rather than a flag:
it is a different model, compared by name in results/. With one code there
is no rung order to schedule (``rung_start_steps`` empty).
"""

from configs.published import celeba_small_8086


def one_code(config, name: str):
  """``config`` with the ladder's codes merged into one at the top."""
  config.name = name
  dims = config.model.latent_dims
  config.model.latent_dims = (0,) * (len(dims) - 1) + (sum(dims),)
  config.rung_start_steps = ()
  return config


def get_config():
  return one_code(celeba_small_8086.get_config(), "celeba_small_vae")
