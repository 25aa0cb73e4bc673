"""Subprocess side of ``test_full_size_model_exports_to_tflite_and_onnx`` (tests/export/test_export_matrix.py).

Usage: ``python _full_size_export.py NAME OUT_DIR``. Builds the registered model
NAME at its default size with random BatchNormalization statistics, fuses it,
exports it to TFLite (fp32) and ONNX with verification, checks both files and
the TFLite file against the *unfused* model, and prints one line
``peak_rss_bytes N``. Any failed check raises (non-zero exit).

Each full-size model runs in its own process because TensorFlow keeps the memory
of a conversion after it ends (RepLKNet-31B: about 7 GB for TFLite and 14 GB
for ONNX); in the pytest process these peaks would add up across models on a
24 GiB CI machine. Not a test module (pytest collects test_*.py only).
"""

import os
import resource
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(name, out_dir):
    import numpy as np

    import keras_convzoo as kcz
    from keras_convzoo import export
    from keras_convzoo.backend import keras
    from keras_convzoo.testing import randomize_batch_norms

    spec = kcz.get_spec(name)
    shape = spec.default_input_shape
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(
        kcz.create_model(name, input_shape=shape, classifier_activation=None), seed=0
    )
    fused = kcz.deploy.fuse(model)
    tflite = export.to_tflite(fused, os.path.join(out_dir, f"{name}.tflite"), num_samples=2)
    onx = export.to_onnx(
        fused, os.path.join(out_dir, f"{name}.onnx"), dynamic_batch=False, num_samples=2
    )
    for report in (tflite, onx):
        assert report.relative_diff <= 1e-4 and report.top1_agreement == 1.0, str(report)
    x = np.random.default_rng(3).standard_normal((1,) + shape).astype("float32")
    outputs = export.run_tflite(tflite.path, x)[0]
    expected = model(x, training=False).numpy()
    assert outputs.shape == expected.shape
    assert np.abs(outputs - expected).max() <= 1e-4 * np.abs(expected).max()
    # ru_maxrss is in kilobytes on Linux.
    print("peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


if __name__ == "__main__":
    main(*sys.argv[1:])
