"""Subprocess side of the full-size export memory test (tests/export/test_export_memory.py).

Usage: ``python _export_memory_child.py NAME OUT_DIR FORMAT...`` with formats
``onnx``, ``tflite`` (fp32) and ``tflite_int8`` (calibrated on 8 unit-normal
inputs, as ``tools/export_memory.py`` does). Builds the registered model NAME at its
default size as ``tools/export_memory.py`` does (logits, random
BatchNormalization statistics, ``deploy.fuse``, the unfused model dropped),
exports it in each format in turn in this one process (each exporter verifies
its file against Keras and raises when it is out of tolerance) and prints
``peak_rss_bytes N`` (this process's ``VmHWM``) and one ``report`` line per
file. Not a test module (pytest collects test_*.py only).
"""

import gc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _hwm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(name, out_dir, *formats):
    import numpy as np

    import keras_convzoo as kcz
    from keras_convzoo import export
    from keras_convzoo.backend import keras
    from keras_convzoo.testing import randomize_batch_norms

    spec = kcz.get_spec(name)
    shape = spec.input_shape_at(spec.default_size)
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(kcz.create_model(name, input_shape=shape, classifier_activation=None), seed=0)
    fused = kcz.deploy.fuse(model)
    del model
    gc.collect()
    print("build_peak_rss_bytes", _hwm_bytes(), flush=True)
    for fmt in formats:
        if fmt == "onnx":
            report = export.to_onnx(fused, os.path.join(out_dir, f"{name}.onnx"), dynamic_batch=False, num_samples=4)
        elif fmt == "tflite":
            report = export.to_tflite(fused, os.path.join(out_dir, f"{name}.tflite"), num_samples=4)
        elif fmt == "tflite_int8":
            calibration = np.random.default_rng(100).standard_normal((8,) + tuple(shape)).astype("float32")
            report = export.to_tflite(fused, os.path.join(out_dir, f"{name}_int8.tflite"), quantization="int8",
                                      representative_data=calibration, num_samples=8)
        else:
            raise ValueError(f"unknown format {fmt!r}")
        if fmt != "tflite_int8":  # int8 is checked by to_tflite against its own tolerance
            assert report.relative_diff <= 1e-4, str(report)
        print("report", fmt, report.relative_diff, report.snr_db, flush=True)
        os.remove(report.path)
    print("peak_rss_bytes", _hwm_bytes(), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
