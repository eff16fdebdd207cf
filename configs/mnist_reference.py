"""MNIST with the reference code's networks: a ladder branch with its own
weights beside each rung's inference branch, ReLU in the decoder.

    python main.py --config=configs/mnist_reference.py --config.data_dir=../shared/data/mnist --workdir=runs/mnist_reference

../shared/REFERENCE.md. One difference remains: the reference's rung-0
inference branch ends in a dense1024 that its ladder branch lacks; here that
layer is rung 1's first dense layer (rung 1 reads the flattened 7x7x128 map).
"""

from configs import mnist


def get_config():
  config = mnist.get_config()
  config.name = "mnist_reference"
  config.model.head_branches = True
  config.model.decoder_activation = "relu"
  return config
