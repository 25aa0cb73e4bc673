"""tf.distribute: MirroredStrategy over 2 logical CPUs and a 2-worker MultiWorkerMirroredStrategy.

The logical-device split must happen before TensorFlow initialises its devices, and
multi-worker training needs one process per worker, so the training runs in
subprocesses (tests/_distribute_worker.py), all started at once by one module
fixture (about a minute of CPU in all), and the tests check what they wrote.

Tolerances (float32, losses of 3 SGD steps at lr 0.01, global batch 8, tiny twins at 32x32):
- step 1 (same weights, same batch): relative 1e-5 for every family. The strategy only
  changes the summation order of the reductions (BN is synchronised across replicas,
  and the single-device model uses the same synchronised-BN formula).
- steps 2-3 and the trainable weights after 3 steps: relative 1e-4 and 1e-3 of how far
  training moved the weights for the well-conditioned families (measured: ~1e-6).
- The MobileNetV2 and RepLKNet tiny twins are ill-conditioned at 32x32: their last
  stages are 1x1 maps, so BN normalises 8 values per channel, some with a variance near
  0, the gradients are large (RepLKNet's weights move by 0.7 in 3 SGD steps at lr 0.01)
  and the 1e-7 roundoff differences of the step-1 gradients grow chaotically. Step 2
  still agrees to ~1e-4 (measured 1.2e-4 for RepLKNet on an AVX-512 Xeon), but step 3
  and the weights after it do not: RepLKNet's step-3 loss is 2.0871 single-device and
  1.7826 mirrored with oneDNN on that Xeon, 2.0823 and 2.0817 with TF_ENABLE_ONEDNN_OPTS=0;
  two *single-device* runs differ by 0.2% (1% at 64x64) only through oneDNN's summation
  order, and the weights end 37% of their change apart. For these families steps 1-2 are
  compared (step 2 within 2e-3 relative) and step 3 and the weights are not.
  A faulty distribution (gradients summed instead of averaged, a replica skipping its
  update, per-replica BN statistics) moves the step-2 loss by the size of a training
  step (1e-2 to 5e-1 here), so step 2 catches it in every family (summed gradients,
  measured: step 2 off by 30% for RepLKNet and 7% for MobileNetV2 0.35).
- MultiWorkerMirroredStrategy: the two workers end with bitwise identical trainable
  weights (every update is all-reduced), and their losses equal single-device training
  on the same global batches (synchronised BN) within 1e-5 relative.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import keras_convzoo as kcz

# Several training subprocesses (one per family, two workers): CI runs them in the second step.
pytestmark = pytest.mark.slow

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_distribute_worker.py")
TIMEOUT_S = 420
#: Families whose tiny twins amplify roundoff during training (see the module docstring).
ILL_CONDITIONED_FAMILIES = ("mobilenetv2", "replknet")

FAMILY_MODELS = sorted({kcz.get_spec(n).family: n for n in reversed(kcz.list_models())}.values())


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts the mirrored runs (families in two halves) and the two workers; waits for all."""
    out = tmp_path_factory.mktemp("distribute")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("TF_CONFIG", None)
    halves = [FAMILY_MODELS[0::2], FAMILY_MODELS[1::2]]
    ports = ",".join(str(p) for p in _free_ports(2))
    commands = {f"mirrored{i}": ["mirrored", ",".join(h), str(out / f"mirrored{i}.npz")] for i, h in enumerate(halves)}
    commands.update({f"worker{i}": ["multiworker", str(i), ports, str(out / f"worker{i}.npz")] for i in range(2)})
    processes = {}
    for key, args in commands.items():
        log = open(out / f"{key}.log", "w")
        command = [sys.executable, WORKER, *args]
        processes[key] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failures = []
    try:
        for key, (process, log) in processes.items():
            try:
                code = process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = "timeout"
            if code != 0:
                failures.append(f"{key}: exit {code}\n" + (out / f"{key}.log").read_text()[-3000:])
    finally:
        for process, log in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    assert not failures, "\n\n".join(failures)
    mirrored = {}
    for i in range(2):
        data = np.load(out / f"mirrored{i}.npz")
        mirrored.update({k: data[k] for k in data.files})
    workers = [dict(np.load(out / f"worker{i}.npz")) for i in range(2)]
    return mirrored, workers


def test_one_model_per_family():
    families = {kcz.get_spec(n).family for n in kcz.list_models()}
    assert sorted(kcz.get_spec(n).family for n in FAMILY_MODELS) == sorted(families)


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_mirrored_matches_single_device(runs, name):
    mirrored, _ = runs
    assert int(mirrored[f"{name}/replicas"]) == 2
    single = mirrored[f"{name}/single_losses"]
    distributed = mirrored[f"{name}/mirrored_losses"]
    assert single.shape == distributed.shape == (3,)
    assert np.all(np.isfinite(single))
    np.testing.assert_allclose(distributed[0], single[0], rtol=1e-5)
    change = float(mirrored[f"{name}/weight_change"])
    assert change > 1e-3, "training did not move the weights"
    if kcz.get_spec(name).family in ILL_CONDITIONED_FAMILIES:  # chaotic after step 2 (docstring)
        np.testing.assert_allclose(distributed[1], single[1], rtol=2e-3)
        return
    np.testing.assert_allclose(distributed, single, rtol=1e-4)
    assert float(mirrored[f"{name}/weight_diff"]) <= 1e-3 * change


def test_multi_worker_mirrored_strategy(runs):
    _, (chief, other) = runs
    assert int(chief["replicas"]) == int(other["replicas"]) == 2
    np.testing.assert_array_equal(chief["losses"], other["losses"])
    weights = sorted(k for k in chief if k.startswith("w") and k != "weight_change")
    assert weights and weights == sorted(k for k in other if k.startswith("w") and k != "weight_change")
    for key in weights:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    assert float(chief["weight_change"]) > 1e-4, "training did not move the weights"
    np.testing.assert_allclose(chief["losses"], chief["reference_losses"], rtol=1e-5)
