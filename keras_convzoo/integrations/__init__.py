"""Adapters to the Keras ecosystem: keras-cv and keras-hub backbones.

Both libraries are optional dependencies (``pip install keras_convzoo[ecosystem]``)
and are imported only when an adapter is called, never by ``import keras_convzoo``.

- ``keras_convzoo.integrations.keras_cv.backbone(name, ...)``: a
  ``keras_cv.models.Backbone`` for ``keras_cv.models.ImageClassifier``,
  ``keras_cv.models.RetinaNet`` ...
- ``keras_convzoo.integrations.keras_hub.backbone(name, ...)``: a
  ``keras_hub.models.FeaturePyramidBackbone`` (a ``keras_hub.models.Backbone``)
  for ``keras_hub.models.ImageClassifier`` and the keras-hub detectors.

Example:
>>> from keras_convzoo.integrations import keras_cv as kcz_cv
>>> import keras_cv
>>> backbone = kcz_cv.backbone("resnext50_32x4d")
>>> classifier = keras_cv.models.ImageClassifier(backbone=backbone, num_classes=10)
"""
