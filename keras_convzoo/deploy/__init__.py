"""Inference forms of zoo models: ``fuse`` folds BN into convolutions."""

from keras_convzoo.deploy.fuse import fuse

__all__ = ["fuse"]
