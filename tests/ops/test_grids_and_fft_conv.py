"""Exact coordinate grid, the official crop rule, and FFT vs direct convolution."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from keras_convzoo.backend import tf
from keras_convzoo.ops.fft_conv import (
    _SMOOTH,
    direct_conv,
    direct_depthwise_conv,
    fft_conv,
    fft_depthwise_conv,
    fft_lengths,
)
from keras_convzoo.ops.grids import crop_ranges, crop_sizes, linspace, linspace_tf

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "ccnn_reference"


def test_linspace_is_symmetric_exact_and_matches_its_tf_twin():
    np.testing.assert_array_equal(linspace(5), np.array([-1, -0.5, 0, 0.5, 1], np.float32))
    for n in (2, 3, 33, 128, 784, 1024, 1025, 4096):
        grid = linspace(n)
        assert grid.dtype == np.float32 and grid[0] == -1 and grid[-1] == 1
        assert np.all(np.diff(grid) > 0)
        np.testing.assert_array_equal(grid, -grid[::-1])  # torch's two-sided construction is symmetric
        np.testing.assert_array_equal(linspace_tf(tf.constant(n)).numpy(), grid)
    symbolic = tf.function(linspace_tf, input_signature=[tf.TensorSpec((), tf.int32)])
    np.testing.assert_array_equal(symbolic(tf.constant(257)).numpy(), linspace(257))


def test_linspace_differs_from_single_rounding_of_numpy_linspace():
    # The reference grid is not np.linspace in float32: at some lengths taps differ by an ulp.
    assert any(not np.array_equal(linspace(n), np.linspace(-1, 1, n).astype(np.float32)) for n in range(100, 1100))


@pytest.mark.parametrize("n, causal, taps", [(784, True, 65), (1024, True, 84), (33, False, 5)])
def test_crop_at_init_matches_the_reference_measurements(n, causal, taps):
    dims = 1 if causal else 2
    assert crop_sizes([0.075] * dims, [n] * dims, causal) == [taps] * dims
    starts, stops = crop_ranges(tf.constant([0.075] * dims), [n] * dims, causal)
    assert list((stops - starts).numpy()) == [taps] * dims


def test_crop_matches_every_fixture_layer():
    count = 0
    for path in sorted(FIXTURES.glob("*.json")):
        config = json.loads(path.read_text())
        state = np.load(path.with_suffix(".npz"))
        for layer, taps in config["kernel_taps_after_crop"].items():
            sigma = state[f"{layer}.mask_width_param"]
            n = int(state[f"{layer}.train_length"][0])
            sizes = [n] * config["dim"]
            assert crop_sizes(sigma, sizes, config["causal"]) == taps
            starts, stops = crop_ranges(tf.constant(sigma), sizes, config["causal"])
            assert list((stops - starts).numpy()) == taps
            count += 1
    assert count == 12


def test_centred_crop_is_central_and_causal_crop_keeps_the_end():
    starts, stops = crop_ranges(tf.constant([0.2, 0.05]), [33, 33], causal=False)
    for start, stop in zip(starts.numpy(), stops.numpy()):
        assert start + stop == 33  # symmetric around the centre tap 16
    starts, stops = crop_ranges(tf.constant([0.2]), [100], causal=True)
    assert stops.numpy()[0] == 100 and starts.numpy()[0] > 0
    starts, stops = crop_ranges(tf.constant([5.0]), [100], causal=True)  # mask wider than the grid: no crop
    assert starts.numpy()[0] == 0


def _numpy_correlation(x, kernel, causal, depthwise=True):
    dims = x.ndim - 2
    taps = kernel.shape[:dims]
    pads = [(taps[0] - 1, 0)] if causal else [((t - 1) // 2, t // 2) for t in taps]
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out = 0.0
    for offset in itertools.product(*[range(t) for t in taps]):
        window = xp[(slice(None),) + tuple(slice(o, o + s) for o, s in zip(offset, x.shape[1:-1]))]
        out = out + (window * kernel[offset] if depthwise else window @ kernel[offset])
    return out


CASES = [
    ((2, 37, 3), (8,), True),  # even causal kernel
    ((2, 40, 3), (40,), True),  # kernel as long as the signal; padded length 79 is odd
    ((2, 37, 3), (9,), False),
    ((1, 11, 13, 4), (5, 3), False),  # rectangular
    ((1, 6, 7, 5, 2), (3, 5, 3), False),  # 3D
]


@pytest.mark.parametrize("shape, taps, causal", CASES)
def test_depthwise_direct_and_fft_equal_numpy(shape, taps, causal):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    kernel = rng.standard_normal(taps + (shape[-1],)).astype("float32")
    expected = _numpy_correlation(x.astype(np.float64), kernel.astype(np.float64), causal)
    for fn in (direct_depthwise_conv, fft_depthwise_conv):
        got = fn(tf.constant(x), tf.constant(kernel), causal).numpy()
        assert got.shape == shape
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("shape, taps, causal", CASES[::2])
def test_dense_direct_and_fft_equal_numpy(shape, taps, causal):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype("float32")
    kernel = rng.standard_normal(taps + (shape[-1], 5)).astype("float32")
    expected = _numpy_correlation(x.astype(np.float64), kernel.astype(np.float64), causal, depthwise=False)
    for fn in (direct_conv, fft_conv):
        np.testing.assert_allclose(fn(tf.constant(x), tf.constant(kernel), causal).numpy(), expected, atol=5e-5)


def test_symbolic_kernel_sizes_in_one_traced_function():
    fn = tf.function(
        lambda x, k: (fft_depthwise_conv(x, k, True), direct_depthwise_conv(x, k, True)),
        input_signature=[tf.TensorSpec((None, None, 3)), tf.TensorSpec((None, 3))],
    )
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 50, 3)).astype("float32")
    for taps in (1, 17, 50):
        kernel = rng.standard_normal((taps, 3)).astype("float32")
        expected = _numpy_correlation(x, kernel, True)
        fft, direct = fn(x, kernel)
        np.testing.assert_allclose(fft.numpy(), expected, atol=2e-5)
        np.testing.assert_allclose(direct.numpy(), expected, atol=2e-5)
    assert fn.experimental_get_tracing_count() == 1  # one trace serves every kernel size


def _graph_op_types(fn, *specs):
    """Op types of a traced function, those of its nested functions (cond/while branches) included."""
    graph_def = tf.function(fn).get_concrete_function(*specs).graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_fft_lengths_are_the_smallest_5_smooth_numbers_without_searchsorted():
    sizes = np.arange(1, 5001, dtype=np.int32)
    taps = (sizes * 7) % 301 + 1
    needed = sizes + taps - 1
    expected = _SMOOTH[np.searchsorted(_SMOOTH, needed, side="left")]
    np.testing.assert_array_equal(fft_lengths(sizes, taps).numpy(), expected)
    spec = tf.TensorSpec((None,), tf.int32)
    assert "LowerBound" not in _graph_op_types(fft_lengths, spec, spec)


@pytest.mark.parametrize("dims, causal", [(1, True), (1, False), (2, False)])
def test_fft_path_has_no_conjugation_or_searchsorted(dims, causal):
    """The kernel is reversed in the spatial domain instead of conjugating its spectrum (TFLite has no Conj)."""
    x_spec = tf.TensorSpec((None,) * (dims + 1) + (3,))
    k_spec = tf.TensorSpec((None,) * dims + (3,))
    types = _graph_op_types(lambda x, k: fft_depthwise_conv(x, k, causal), x_spec, k_spec)
    assert {"RFFT" if dims == 1 else "RFFT2D", "IRFFT" if dims == 1 else "IRFFT2D"} <= types
    assert not types & {"Conj", "LowerBound"}, types
    dense = _graph_op_types(lambda x, k: fft_conv(x, k, causal), x_spec, tf.TensorSpec((None,) * dims + (3, 2)))
    assert not dense & {"Conj", "LowerBound"}, dense


@pytest.mark.parametrize("max_taps", [None, (5, 3, 3), (8, 3, 3)])
def test_3d_depthwise_with_symbolic_taps_unrolls_to_a_static_bound(max_taps):
    """A static bound replaces the tf.while_loop over depth taps (which TFLite and ONNX cannot convert here)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 4, 3)).astype("float32")
    fn = tf.function(lambda x, k: direct_depthwise_conv(x, k, max_taps=max_taps),
                     input_signature=[tf.TensorSpec((None, 6, 5, 4, 3)), tf.TensorSpec((None, None, None, 3))])
    for taps in ((1, 3, 3), (3, 1, 3), (5, 3, 1)):
        kernel = rng.standard_normal(taps + (3,)).astype("float32")
        expected = _numpy_correlation(x.astype(np.float64), kernel.astype(np.float64), False)
        np.testing.assert_allclose(fn(x, kernel).numpy(), expected, atol=2e-5)
    types = _graph_op_types(fn.python_function, *fn.input_signature)
    assert ("While" in types or "StatelessWhile" in types) == (max_taps is None), types


def test_causal_needs_1d():
    with pytest.raises(ValueError, match="1D"):
        direct_depthwise_conv(tf.zeros((1, 4, 4, 2)), tf.zeros((3, 3, 2)), causal=True)
