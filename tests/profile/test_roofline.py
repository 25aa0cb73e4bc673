"""Roofline arithmetic: traffic bytes of count_flops, the ceilings' formulas, and a model's place under them."""

import numpy as np
import pytest

from keras_convzoo.backend import keras
from keras_convzoo.profile import MachinePeaks, count_flops, roofline_point
from keras_convzoo.profile import roofline as roofline_module


def _dense():
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.Dense(4)(inputs))


def test_traffic_bytes_count_inputs_outputs_and_weights_once():
    # Dense 8 -> 4 at batch 1: reads 8 inputs and 8*4 + 4 weights, writes 4 outputs, all float32.
    macs = count_flops(_dense())
    assert macs.total == 32
    assert macs.traffic_bytes == 4 * (8 + 4) + 4 * (8 * 4 + 4) == 192
    assert macs.intensity == pytest.approx(32 / 192)


def test_shared_layer_weights_are_read_once_and_each_call_moves_its_activations():
    inputs = keras.Input((8,))
    shared = keras.layers.Dense(8, use_bias=False)
    model = keras.Model(inputs, shared(shared(inputs)))
    macs = count_flops(model)
    assert macs.total == 2 * 64
    assert macs.traffic_bytes == 4 * 2 * (8 + 8) + 4 * 64


def test_conv_traffic_matches_the_shapes():
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="valid", use_bias=False)(inputs))
    macs = count_flops(model)
    assert macs.total == 3 * 3 * 2 * 3 * 4 * 4
    assert macs.traffic_bytes == 4 * (6 * 6 * 2 + 4 * 4 * 3) + 4 * (3 * 3 * 2 * 3)


PEAKS = MachinePeaks(fp32_gmacs=100.0, int8_gmacs=400.0, bandwidth_gbs=10.0, threads=2, int8_flags=("avx512_vnni",))


def test_roofline_point_of_a_compute_bound_model():
    macs = count_flops(_dense())  # 32 MACs, 192 bytes
    # 32 MACs x batch 1000 in 0.0016 ms = 20 GMAC/s
    point = roofline_point(macs, median_ms=0.0016, peaks=PEAKS, batch_size=1000)
    assert point.achieved_gmacs == pytest.approx(20.0)
    assert point.fraction_of_peak == pytest.approx(0.2)
    assert point.intensity == pytest.approx(32 / 192)
    # memory ceiling 1/6 MAC/byte x 10 GB/s = 1.67 GMAC/s < 100: memory-bound
    assert point.bound == "memory" and point.bound_gmacs == pytest.approx(10 * 32 / 192)
    int8 = roofline_point(macs, median_ms=0.0016, peaks=PEAKS, batch_size=1000, int8=True)
    assert int8.fraction_of_peak == pytest.approx(0.05) and int8.intensity == pytest.approx(4 * 32 / 192)


def test_roofline_rejects_what_it_cannot_place():
    macs = count_flops(_dense())
    with pytest.raises(ValueError, match=r"`median_ms` must be a positive time. Received: median_ms=0"):
        roofline_point(macs, 0, PEAKS)
    no_int8 = MachinePeaks(fp32_gmacs=100.0, int8_gmacs=None, bandwidth_gbs=10.0, threads=2)
    with pytest.raises(ValueError, match=r"`int8=True` needs an int8 peak"):
        roofline_point(macs, 1.0, no_int8, int8=True)


def test_ceiling_formulas_use_their_work_and_bytes(monkeypatch):
    # Timing replaced by 2 ms: the formulas are work / time.
    calls = []

    def fixed(call, repeats):
        calls.append(call())
        return 2.0

    monkeypatch.setattr(roofline_module, "_median_ms", fixed)
    assert roofline_module.fp32_gemm_gmacs(size=64, repeats=1) == pytest.approx(64**3 / 2.0 / 1e6)
    assert roofline_module.bandwidth_gbs(megabytes=4, repeats=1) == pytest.approx(3 * 4 * 2**20 / 2.0 / 1e6)
    np.testing.assert_array_equal(np.asarray(calls[-1]), np.full(2**20, 3.0, "float32"))  # a + b was computed
    for int8 in (False, True):
        gmacs = roofline_module.litert_gemm_gmacs(rows=8, size=32, repeats=1, num_threads=1, int8=int8)
        assert gmacs == pytest.approx(8 * 32 * 32 / 2.0 / 1e6)


def test_int8_flags_come_from_cpuinfo(monkeypatch):
    monkeypatch.setattr(roofline_module, "cpu_flags", lambda: ("avx2", "avx512_vnni", "fma"))
    for name in ("fp32_gemm_gmacs", "bandwidth_gbs"):
        monkeypatch.setattr(roofline_module, name, lambda **kwargs: 1.0)
    # LiteRT: fp32 1.5 (faster than TensorFlow's 1.0, so it is the fp32 peak), int8 4.0
    monkeypatch.setattr(roofline_module, "litert_gemm_gmacs", lambda int8=False, **kwargs: 4.0 if int8 else 1.5)
    peaks = roofline_module.measure_peaks(num_threads=2, repeats=1)
    assert peaks == MachinePeaks(1.5, 4.0, 1.0, 2, ("avx512_vnni",))
    monkeypatch.setattr(roofline_module, "cpu_flags", lambda: ("avx2", "fma"))
    assert roofline_module.measure_peaks(num_threads=2, repeats=1).int8_gmacs is None
