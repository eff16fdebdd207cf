"""Default config: the embedded 8x8 digits, small enough for minutes on a CPU.

    python main.py                         # trains into runs/default (about a minute on 2 CPU cores: README)
    python main.py --mode=traverse         # per-rung traversal figures

Every field is read by vlae_jax; variants (mnist.py, celeba.py) import this
and override. Any field can be set on the command line: --config.batch_size=64.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.name = "default"

  # Data.
  config.dataset = "digits"      # "digits" (bundled), "mnist", "celeba", "folder", "tfds:NAME"
  config.data_dir = ""           # local folder (IDX files / CelebA layout / your images); "" -> TFDS
  config.tfds_data_dir = ""      # TFDS's own data_dir; "" -> TFDS default
  config.cache_dir = ""          # decoded-image cache; "" -> ~/.cache/vlae_jax
  config.image_size = 64         # celeba, folder, tfds:NAME: side of the square crop after resizing
  # folder and tfds:NAME only (configs/folder.py documents them):
  config.channels = 0            # 1 (grayscale) or 3 (RGB); 0 -> 3
  config.test_fraction = 0.0     # hash split when there are no train/ test/ subfolders; 0 -> 0.1
  # Train images held out as the validation split (a fixed random choice, the
  # same for every seed), on which recipes are chosen (`--mode=evaluate
  # --split=validation`); 0: none. CelebA has its official partition: 0.
  config.validation_size = 0
  config.labels_file = ""        # CSV 'file,label' or 'file,attr1,...'; "" -> DIR/labels.csv if present
  config.decode_workers = 0      # processes decoding JPEGs on the first run; 0 -> every core

  # Model (see vlae_jax/models.py). Rung 0 is the bottom (closest to pixels).
  config.model = ml_collections.ConfigDict()
  config.model.latent_dims = (2, 2, 2)
  config.model.rung_kinds = ("conv", "dense", "dense")        # "conv" | "dense"
  config.model.rung_widths = ((32, 64), (256,), (256,))        # channels/units per layer
  # Per rung, the stride (1 or 2) of each conv layer; () -> every conv has
  # stride 2. The decoder mirrors them.
  config.model.rung_strides = ()
  # True: each rung's mean/std heads read a second copy of its layers (own
  # weights) instead of h_l: the reference code's ladder branch.
  config.model.head_branches = False
  config.model.decoder_activation = ""   # "" -> activation; the reference uses "relu"
  config.model.combine = "gated_sum"     # "gated_sum" (MNIST reference) | "concat" (CelebA)
  config.model.norm = "batch"            # "batch" | "none"
  config.model.activation = "leaky_relu" # slope 0.1; or "relu", "swish", "elu"
  # How the 4x4 stride-2 (transposed) convs are computed; every form is the
  # same function of the same parameters, "auto" the fastest measured for the
  # backend and layer (vlae_jax/convolutions.py, docs/PERFORMANCE.md).
  config.model.upsample = "auto"         # | "native" | "gemm" | "gemm_blas"
  config.model.downsample = "auto"       # | "native" | "gemm" | "gemm_blas"
  # Who runs the dense layers' and "auto" conv forms' matrix products: "auto"
  # = an optimised BLAS inside the compiled step on a one-device CPU (float32;
  # faster than XLA:CPU's GEMM, vlae_jax/blas.py), XLA elsewhere | "xla" | "blas".
  config.model.matmul = "auto"
  config.model.std_floor = 1e-3          # posterior std = sigmoid(.) + std_floor
  # Per rung (bottom first), a floor replacing std_floor: a higher floor
  # limits how much a rung's code carries to the decoder. () -> std_floor.
  config.model.rung_std_floors = ()
  # Per rung (bottom first), a ceiling of the posterior std in (floor, 1],
  # or 0 for none; () -> none. Below 1 the rung cannot match the prior by
  # collapsing onto it (mean 0, std 1): its codes must carry the image.
  config.model.rung_std_ceilings = ()
  config.dtype = "float32"               # compute dtype: "float32" | "bfloat16"

  # Loss: rec_weight * reconstruction + sum_l mmd_weight * MMD^2(q(z_l), N(0, I)),
  # or with regularizer="kl" (the original VLAE):
  # rec_weight * reconstruction + w_t * sum_l kl_weight * KL(q(z_l|x) || N(0, I)).
  config.loss = ml_collections.ConfigDict()
  config.loss.regularizer = "mmd"            # "mmd" (this paper) | "kl" (the original VLAE)
  config.loss.reconstruction = "l1"          # "l1" (reference) | "l2" | "bernoulli"
  config.loss.rec_weight = 100.0
  config.loss.mmd_weight = 100.0             # beta_l, the same for every rung
  # Per rung (bottom first), a weight replacing mmd_weight; () -> mmd_weight.
  config.loss.rung_mmd_weights = ()
  config.loss.kernel = "reference"           # "reference" | "imq" | "gaussian_median"
  config.loss.estimator = "biased"           # "biased" | "unbiased" | "linear"
  config.loss.num_prior_samples = 0          # prior draws per rung per step; 0 -> batch size
  # The KL regulariser's weights: analytic KL of each rung's diagonal Gaussian
  # posterior, summed over dimensions, mean over the batch.
  config.loss.kl_weight = 1.0                # the same for every rung
  config.loss.rung_kl_weights = ()           # per rung (bottom first); () -> kl_weight
  config.loss.kl_warmup_steps = 0            # w_t = 1 - exp(-t / this); 0 -> w_t = 1

  # Optimisation.
  config.learning_rate = 1e-3
  # Steps over which the rate rises linearly from 0 (0: none, plain Adam).
  config.warmup_steps = 0
  # After the warm-up: "constant", or "cosine" down to learning_rate x
  # learning_rate_end_fraction at num_train_steps (the run's fixed budget).
  config.learning_rate_schedule = "constant"
  config.learning_rate_end_fraction = 0.0
  config.batch_size = 100
  config.num_train_steps = 3000
  config.seed = 0
  # Progressive training (proVLAE): per rung (bottom first), the step where
  # the rung's code starts to reach the decoder, fading in linearly over
  # rung_fade_steps. () -> every rung from step 0 (the VLAE of the paper).
  config.rung_start_steps = ()
  config.rung_fade_steps = 0
  # Wall-clock budget of one invocation in minutes (0: none): training
  # stops there, saves, and resumes on the next run like after Ctrl-C.
  config.max_train_minutes = 0.0
  config.skip_nonfinite = False  # True: skip (and count) non-finite updates instead of stopping
  # Bitwise-reproducible runs and resumes: XLA's GPU determinism flag and
  # float32 matmuls/convs at full precision (no TF32). Costs speed on a GPU
  # only (docs/PERFORMANCE.md); False trades reproducibility for that speed.
  config.deterministic = True

  # Bookkeeping.
  config.log_every = 100          # console + TensorBoard scalars
  config.eval_every = 1000        # test-split loss
  config.num_eval_batches = 0     # 0 -> the whole test split
  config.image_every = 1000       # sample / reconstruction grids to TensorBoard
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3     # the newest this many
  # Also keep every checkpoint whose step is a multiple of this (0: none):
  # the points of a training curve, for `--checkpoint_step` analyses.
  config.keep_checkpoint_every = 0
  return config
