"""Keras' own ``model.export(format="onnx" | "litert")`` on every registered model, checked against Keras.

No keras_convzoo exporter is involved: the files are what a user gets from
``model.export`` on a zoo model (the tiny twin of each variant, BatchNorms
randomised, logits head, a static input shape), run with onnxruntime and
with ``ai_edge_litert``'s interpreter (no Flex delegate: an op outside the
TFLite builtins fails) on seeded inputs in the model's range, and compared
with ``model(x, training=False)``.

The default run exports one variant per family, and CCNN also as a 1D and
a 3D model (its dimensionality follows the input rank); the other variants
(same family graph, other widths/depths) run under ``-m slow``. A CCNN whose
kernels are large enough for Keras to convolve them through the FFT has no
TFLite/ONNX form unfused (neither has an inverse real FFT): it exports
fused (``kcz.deploy.fuse``), the last test.
"""

import collections

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import LEGACY_KERAS
from keras_convzoo.testing import randomize_batch_norms

pytestmark = [
    pytest.mark.export,
    pytest.mark.skipif(LEGACY_KERAS, reason="model.export(format=...) is Keras 3's; tf_keras has no such formats"),
    pytest.mark.filterwarnings("ignore:In the future `np.object`:FutureWarning"),  # Keras' tf2onnx patch
]

#: CCNN's dimensionality follows the input rank: images, sequences and volumes.
CCNN_SHAPES = ((32, 32, 3), (64, 3), (8, 8, 8, 3))


def _input_shapes(name):
    spec = kcz.get_spec(name)
    if spec.family == "ccnn":
        return CCNN_SHAPES
    return (spec.input_shape_at(max(32, spec.min_size)),)


def _cases():
    """``(name, input_shape)`` pairs: the first variant of each family by default, the rest marked slow."""
    seen, cases = set(), []
    for name in kcz.list_models():
        family = kcz.get_spec(name).family
        marks = [pytest.mark.slow] if family in seen else []
        seen.add(family)
        for shape in _input_shapes(name):
            cases.append(pytest.param(name, shape, marks=marks, id=f"{name}-{'x'.join(map(str, shape))}"))
    return cases


CASES = _cases()


def _model(name, input_shape):
    spec = kcz.get_spec(name)
    model = kcz.create_model(name, input_shape=input_shape, classes=10, classifier_activation=None,
                             **spec.test_overrides)
    return randomize_batch_norms(model, seed=1)


def _inputs(name, input_shape, batch=2, seed=0):
    """Seeded inputs in the model's range: 0-255 images scaled by the family's preprocessing, else N(0, 1)."""
    rng = np.random.default_rng(seed)
    if kcz.get_spec(name).preprocessing is None:
        return rng.standard_normal((batch,) + tuple(input_shape)).astype("float32")
    images = rng.uniform(0.0, 255.0, (batch,) + tuple(input_shape)).astype("float32")
    return np.asarray(kcz.preprocess_input(images, name), dtype="float32")


def run_onnx_file(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.run(None, {inp.name: x})
    return out


def litert_ops(path):
    """Op names of a TFLite file as written (no delegate applied)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return [op["op_name"] for op in interpreter._get_ops_details()]


def run_litert_file(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    (out,) = interpreter.get_output_details()
    return interpreter.get_tensor(out["index"])


def _check_close(actual, expected, what):
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    diff = float(np.abs(actual - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    assert diff <= 1e-4 * scale, f"{what}: max_abs_diff={diff:.3g}, output scale {scale:.3g}"


@pytest.fixture(scope="module")
def models():
    """Tiny twins by case, built once for both formats."""
    cache = {}

    def get(name, input_shape):
        key = (name, tuple(input_shape))
        if key not in cache:
            cache[key] = _model(name, input_shape)
        return cache[key]

    return get


@pytest.mark.parametrize("name, input_shape", CASES)
def test_keras_export_onnx_equals_keras(name, input_shape, models, tmp_path):
    model = models(name, input_shape)
    x = _inputs(name, input_shape)
    expected = np.asarray(model(x, training=False))  # Keras' ONNX export also needs a model called once
    path = tmp_path / f"{name}.onnx"
    model.export(str(path), format="onnx", verbose=False)
    _check_close(run_onnx_file(path, x), expected, f"{name} onnx")


@pytest.mark.parametrize("name, input_shape", CASES)
def test_keras_export_litert_equals_keras(name, input_shape, models, tmp_path):
    model = models(name, input_shape)
    x = _inputs(name, input_shape)
    expected = np.asarray(model(x, training=False))
    path = tmp_path / f"{name}.tflite"
    model.export(str(path), format="litert", verbose=False)
    flex = [op for op in litert_ops(path) if op.startswith("Flex")]
    assert not flex, f"{name}: ops outside the TFLite builtins: {flex}"
    _check_close(run_litert_file(path, x), expected, f"{name} litert")


def test_convnext_gelu_is_one_builtin_in_litert_and_erf_in_onnx(models, tmp_path):
    """Every GELU of the ConvNeXt twin is one TFLite GELU op (no ERF, no Flex) and an ONNX Erf (no Erfc)."""
    import onnx

    model = models("convnext_tiny", (32, 32, 3))
    model(_inputs("convnext_tiny", (32, 32, 3)))  # Keras' ONNX export needs a model called once
    gelus = sum(type(layer).__name__ == "GELU" for layer in model.layers)
    assert gelus == 5  # one per block of the twin: depths (1, 1, 2, 1)
    litert = tmp_path / "convnext.tflite"
    model.export(str(litert), format="litert", verbose=False)
    ops = collections.Counter(litert_ops(litert))
    assert ops["GELU"] == gelus
    assert "ERF" not in ops and not [op for op in ops if op.startswith("Flex")], dict(ops)
    path = tmp_path / "convnext.onnx"
    model.export(str(path), format="onnx", verbose=False)
    nodes = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert nodes["Erf"] == gelus and "Erfc" not in nodes, dict(nodes)


@pytest.mark.parametrize("input_shape, kernel_size", [((96, 3), 64), ((32, 32, 3), 33)])
def test_fused_ccnn_with_fft_sized_kernels_exports_through_keras(input_shape, kernel_size, tmp_path):
    """Kernels that Keras convolves through the FFT (no TFLite/ONNX form): the fused model exports and equals Keras."""
    model = kcz.CCNN(input_shape=input_shape, classes=5, classifier_activation=None, depth=2, width=12,
                     kernel_hidden=8, kernel_size=kernel_size, mask_init=1.0, seed=0)
    stem = model.get_layer("stem_conv")
    taps = [int(t) for t in stem.kernel().shape[: len(input_shape) - 1]]
    assert bool(stem.uses_fft(taps, stem.max_kernel_taps((None,) + input_shape)))  # Keras takes the FFT here
    x = np.random.default_rng(0).standard_normal((2,) + input_shape).astype("float32")
    expected = np.asarray(model(x, training=False))
    fused = kcz.deploy.fuse(model)
    fused(x)  # Keras' ONNX export needs a model called once
    onnx_path, litert_path = tmp_path / "ccnn.onnx", tmp_path / "ccnn.tflite"
    fused.export(str(onnx_path), format="onnx", verbose=False)
    fused.export(str(litert_path), format="litert", verbose=False)
    _check_close(run_onnx_file(onnx_path, x), expected, "fused ccnn onnx")
    _check_close(run_litert_file(litert_path, x), expected, "fused ccnn litert")
