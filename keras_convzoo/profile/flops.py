"""Multiply-accumulate (MAC) counting from a model's graph at a concrete input size.

Convention (the papers', torchvision's tables and PyTorch's
``torch.utils.flop_counter`` halved): a MAC is one multiply-add of the
convolutions and matrix products; FLOPs are about twice the MACs. Batch
normalization, layer normalization, activations, pooling, element-wise adds
and multiplies (residuals, layer scale, squeeze-and-excitation gating),
biases, padding and resampling count zero. timm's published GMACs come from
a counter that also charges some of those, 0.3-0.7% more. Every figure is
for one sample (batch 1).
"""

import dataclasses
import math
from typing import Dict, Tuple

import numpy as np

from keras_convzoo.backend import keras, tf
from keras_convzoo_cli import format_macs  # noqa: F401  (its TF-free home: the CLI prints MACs without TF)

#: Layer classes that count zero MACs by convention, though they have weights.
ZERO_MAC_LAYERS = (
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "SyncBatchNormalization",
    "LayerScale",
    "PReLU",
    "Normalization",
    "Embedding",
)


@dataclasses.dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of a model for one sample at one input size.

    Attributes:
        total: MACs of the whole model.
        by_type: MACs per layer class name (e.g. ``"Conv2D"``), largest first.
        by_layer: MACs per layer, in graph order; nested layers are named
            ``"outer/inner"``; a layer called several times is summed.
        input_shape: the input shape counted, without batch.
        uncounted: class names of layers with weights that no rule covers
            (they count zero; empty for every model of the zoo).
        traffic_bytes: float32 bytes the layer calls move when each reads
            its inputs and weights and writes its outputs once, with nothing
            kept in cache between layers (inputs + outputs of every call,
            plus each layer's weights once): the memory traffic of an
            unfused execution, for the arithmetic intensity.
    """

    total: int
    by_type: Dict[str, int]
    by_layer: Dict[str, int]
    input_shape: Tuple[int, ...]
    uncounted: Tuple[str, ...] = ()
    traffic_bytes: int = 0

    @property
    def intensity(self):
        """MACs per byte of ``traffic_bytes`` (arithmetic intensity); 0 when nothing is moved."""
        return self.total / self.traffic_bytes if self.traffic_bytes else 0.0

    @property
    def gmacs(self):
        """``total`` in billions (GMACs)."""
        return self.total / 1e9

    def __str__(self):
        lines = [f"MACs at {'x'.join(str(d) for d in self.input_shape)}: {format_macs(self.total)}"]
        for name, macs in self.by_type.items():
            if macs:
                share = 100.0 * macs / self.total
                lines.append(f"  {name:<24}{format_macs(macs):>10}  {share:5.1f}%")
        free = [name for name, macs in self.by_type.items() if not macs]
        if free:
            lines.append(f"  zero by convention: {', '.join(free)}")
        if self.uncounted:
            lines.append(f"  not counted (no rule): {', '.join(self.uncounted)}")
        return "\n".join(lines)


def fft_macs(length):
    """MACs of one real FFT (or inverse real FFT) over ``length`` padded points.

    Convention: ``N log2 N`` for ``N`` points in all (the product of the
    padded sizes of every transformed axis): a complex radix-2 FFT takes
    ``(N / 2) log2 N`` butterflies of one complex multiply (4 real
    multiplies) each, and a real-input FFT half of that.
    """
    return int(round(length * math.log2(length))) if length > 1 else 0


# ---------------------------------------------------------------- shapes
def _prod(values):
    return int(math.prod(int(v) for v in values))


def _channels_and_spatial(layer, shape):
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return int(shape[1]), tuple(shape[2:])
    return int(shape[-1]), tuple(shape[1:-1])


# ----------------------------------------------------------------- rules
def _conv_macs(layer, in_shape, out_shape):
    cin, _ = _channels_and_spatial(layer, in_shape)
    _, out_spatial = _channels_and_spatial(layer, out_shape)
    groups = int(getattr(layer, "groups", 1) or 1)
    return _prod(layer.kernel_size) * (cin // groups) * int(layer.filters) * _prod(out_spatial)


def _conv_transpose_macs(layer, in_shape, out_shape):
    cin, in_spatial = _channels_and_spatial(layer, in_shape)
    return _prod(layer.kernel_size) * cin * int(layer.filters) * _prod(in_spatial)


def _depthwise_macs(layer, in_shape, out_shape):
    cin, _ = _channels_and_spatial(layer, in_shape)
    _, out_spatial = _channels_and_spatial(layer, out_shape)
    return _prod(layer.kernel_size) * cin * int(layer.depth_multiplier) * _prod(out_spatial)


def _separable_macs(layer, in_shape, out_shape):
    cin, _ = _channels_and_spatial(layer, in_shape)
    _, out_spatial = _channels_and_spatial(layer, out_shape)
    mid = cin * int(layer.depth_multiplier)
    return (_prod(layer.kernel_size) * mid + mid * int(layer.filters)) * _prod(out_spatial)


def _dense_macs(layer, in_shape, out_shape):
    return int(in_shape[-1]) * int(layer.units) * _prod(in_shape[1:-1])


def _group_conv_macs(layer, in_shape, out_shape):
    # The nominal grouped count, whatever the lowering (``"dense"`` runs
    # ``groups`` times more multiplies on a block-diagonal kernel).
    kh, kw = layer.kernel_size
    return kh * kw * (int(in_shape[-1]) // layer.groups) * layer.filters * _prod(out_shape[1:-1])


def _reparam_macs(layer, in_shape, out_shape):
    taps = layer.kernel_size**2
    if not layer.deploy and layer.small_kernel:
        taps += layer.small_kernel**2
    return taps * int(in_shape[-1]) * _prod(out_shape[1:-1])


def _shift_conv_macs(layer, in_shape, out_shape):
    return int(in_shape[-1]) * layer.filters * _prod(out_shape[1:-1])


def _squeeze_excite_macs(layer, in_shape, out_shape):
    return 2 * int(in_shape[-1]) * int(layer.squeeze_channels)


def kernel_network_macs(net, positions):
    """MACs of a continuous convolution's kernel network at ``positions`` tap positions.

    ``MAGNet``: per position ``num_layers + 1`` Gabor filters of ``dims *
    hidden``, ``num_layers`` products of ``hidden * hidden`` and the
    ``hidden * out_channels`` output layer. ``KernelMLP`` (SIREN / MLP):
    ``dims * hidden``, then ``num_layers - 1`` of ``hidden * hidden``, then
    ``hidden * out_channels``.
    """
    h, layers = net.hidden, net.num_layers
    dims = int(getattr(net, "dims", None) or net.kernels[0].shape[0])
    if hasattr(net, "kernels"):  # KernelMLP
        per_position = dims * h + (layers - 1) * h * h + h * net.out_channels
    else:
        per_position = (layers + 1) * dims * h + layers * h * h + h * net.out_channels
    return positions * per_position


def _kernel_network_layer_macs(layer, in_shape, out_shape):
    return kernel_network_macs(layer, int(in_shape[0]))


def continuous_conv_taps(layer, input_shape):
    """Kernel taps per spatial dim that a continuous convolution uses for ``input_shape``.

    Args:
        layer: a built ``CKConv``, ``FlexConv`` or ``SeparableFlexConv``.
        input_shape: its input shape, batch first.

    Returns:
        A tuple of ints: the generated kernel after the crop of the mask in
        its current state (``resolution="continuous"``: at that input size),
        or the baked kernel of a ``deploy=True`` layer.
    """
    dims = layer.dims
    if layer.deploy:
        return tuple(int(t) for t in layer.baked_kernel.shape[:dims])
    probe = None
    if layer.resolution == "continuous":
        probe = tf.zeros((1,) + tuple(int(d) for d in input_shape[1:-1]) + (1,))
    return tuple(int(t) for t in layer.kernel(probe).shape[:dims])


def _fft_lengths(spatial, taps):
    """FFT length per axis the convolution ops use (5-smooth, at least ``size + taps - 1``)."""
    from keras_convzoo.ops import fft_conv

    if hasattr(fft_conv, "fft_lengths"):
        return [int(n) for n in np.asarray(fft_conv.fft_lengths(list(spatial), list(taps)))]
    return [s + t - 1 for s, t in zip(spatial, taps)]


def _continuous_conv_macs(layer, in_shape, out_shape):
    spatial = tuple(int(d) for d in in_shape[1:-1])
    positions = _prod(spatial)
    cin, cout = layer.in_channels, layer.filters
    taps = continuous_conv_taps(layer, in_shape)
    macs = 0 if layer.deploy else kernel_network_macs(layer.kernel_network, _prod(taps))
    depthwise = layer.separable
    use_fft = bool(layer.uses_fft(list(taps)))  # the layer's own choice of algorithm
    if use_fft:
        lengths = _fft_lengths(spatial, taps)
        length = _prod(lengths)
        bins = _prod(lengths[:-1]) * (lengths[-1] // 2 + 1)
        if depthwise:  # signal, kernel and inverse transforms per channel; complex products
            macs += 3 * cin * fft_macs(length) + 4 * cin * bins
        else:  # cin signal + cin*cout kernel + cout inverse transforms; complex channel mixing
            macs += (cin + cin * cout + cout) * fft_macs(length) + 4 * cin * cout * bins
    else:
        macs += _prod(taps) * cin * (1 if depthwise else cout) * positions
    if depthwise:
        macs += cin * cout * positions
    return macs


def _rules():
    """``[(class, rule)]`` in match order (subclasses before their bases)."""
    from keras_convzoo import layers as zoo
    from keras_convzoo.layers.continuous_conv import ContinuousConvBase

    layers = keras.layers
    rules = [
        (ContinuousConvBase, _continuous_conv_macs),  # CKConv, FlexConv, SeparableFlexConv
        (zoo.MAGNet, _kernel_network_layer_macs),
        (getattr(zoo, "KernelMLP", None), _kernel_network_layer_macs),
        (zoo.GroupConv2D, _group_conv_macs),
        (zoo.ReparamLargeKernelConv, _reparam_macs),
        (zoo.ShiftConv2D, _shift_conv_macs),
        (zoo.SqueezeExcite, _squeeze_excite_macs),
    ]
    for name, rule in (
        ("Conv1DTranspose", _conv_transpose_macs),
        ("Conv2DTranspose", _conv_transpose_macs),
        ("Conv3DTranspose", _conv_transpose_macs),
        ("SeparableConv1D", _separable_macs),
        ("SeparableConv2D", _separable_macs),
        ("DepthwiseConv1D", _depthwise_macs),
        ("DepthwiseConv2D", _depthwise_macs),
        ("Conv1D", _conv_macs),
        ("Conv2D", _conv_macs),
        ("Conv3D", _conv_macs),
        ("Dense", _dense_macs),
    ):
        if hasattr(layers, name):
            rules.append((getattr(layers, name), rule))
    return [(cls, rule) for cls, rule in rules if cls is not None]


# ---------------------------------------------------------------- tracing
def _graph_of(model):
    """The functional graph of a model (a Keras 3 Sequential wraps one), or None."""
    if not isinstance(model, keras.Model):
        return None
    if hasattr(model, "_functional"):  # Keras 3 Sequential: None until built on an input
        return model._functional
    if hasattr(model, "_nodes_by_depth") and getattr(model, "_is_graph_network", True):
        return model
    return None


class _Counter:
    """Walks a model's graph at concrete shapes and applies the rules."""

    def __init__(self):
        self.rules = _rules()
        self.by_layer = {}
        self.by_type = {}
        self.uncounted = set()
        self.traffic = 0  # float32 bytes read and written by the layer calls
        self.weights_seen = set()

    def add(self, path, layer, in_shapes, out_shapes):
        """Counts one call of ``layer`` (shapes batch first)."""
        if isinstance(layer, keras.Model):
            self.trace(layer, in_shapes, path + "/")
            return
        if layer.__class__.__name__ == "SpatialTransformer":
            self._spatial_transformer(path, layer, in_shapes[0])
            return
        rule = next((rule for cls, rule in self.rules if isinstance(layer, cls)), None)
        kind = type(layer).__name__
        self.traffic += 4 * sum(_prod(s[:]) for s in list(in_shapes) + list(out_shapes) if None not in s)
        if id(layer) not in self.weights_seen:
            self.weights_seen.add(id(layer))
            self.traffic += 4 * int(sum(_prod(w.shape) for w in layer.weights))
        if rule is None:
            if layer.weights and kind not in ZERO_MAC_LAYERS:
                self.uncounted.add(kind)
            macs = 0
        else:
            macs = int(rule(layer, in_shapes[0], out_shapes[0]))
        self.by_layer[path] = self.by_layer.get(path, 0) + macs
        self.by_type[kind] = self.by_type.get(kind, 0) + macs

    def _spatial_transformer(self, path, layer, in_shape):
        local = layer.localization
        features = _shape_list(local.compute_output_shape(tuple(in_shape)))
        self.add(f"{path}/{local.name}", local, [tuple(in_shape)], features)
        self.add(f"{path}/affine", layer.affine, features, [(features[0][0], 6)])

    def trace(self, model, in_shapes, prefix=""):
        """Counts every layer call of ``model`` for inputs of ``in_shapes``; returns the output shapes."""
        graph = _graph_of(model)
        if graph is None:
            if isinstance(model, keras.Sequential):
                return self._trace_sequence(model, in_shapes[0], prefix)
            raise TypeError(
                f"count_flops needs a functional or Sequential model. Received: {type(model).__name__}"
            )
        if hasattr(graph, "_run_through_graph"):
            return self._trace_keras3(graph, in_shapes, prefix)
        return self._trace_tf_keras(graph, in_shapes, prefix)

    def _trace_sequence(self, model, shape, prefix):
        """A Sequential never built on an input: its layers one after the other."""
        shapes = [tuple(shape)]
        for layer in model.layers:
            out = _shape_list(layer.compute_output_shape(shapes[0]))
            self.add(prefix + layer.name, layer, shapes, out)
            shapes = out
        return shapes

    # Keras 3: the graph is run on KerasTensors of the concrete shape with
    # each layer's ``compute_output_spec`` (as Functional.compute_output_spec
    # does), so the model is neither called nor changed.
    def _trace_keras3(self, graph, in_shapes, prefix):
        dtype = graph.inputs[0].dtype
        inputs = [keras.KerasTensor(tuple(shape), dtype=dtype) for shape in in_shapes]

        def operation_fn(op):
            def run(*args, **kwargs):
                spec_in = [t for t in tf.nest.flatten([args, kwargs]) if isinstance(t, keras.KerasTensor)]
                shapes_in = [tuple(t.shape) for t in spec_in]
                outputs = op.compute_output_spec(*args, **kwargs)
                if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer):
                    shapes_out = [tuple(t.shape) for t in tf.nest.flatten(outputs)]
                    self.add(prefix + op.name, op, shapes_in, shapes_out)
                return outputs

            return run

        outputs = graph._run_through_graph(inputs if len(inputs) > 1 else inputs[0], operation_fn=operation_fn)
        return [tuple(t.shape) for t in tf.nest.flatten(outputs)]

    # tf_keras: the nodes are walked in order and the concrete shapes
    # propagated with each layer's ``compute_output_shape`` (the static
    # shapes tf_keras recorded lose sizes behind a ``tf.cond``).
    def _trace_tf_keras(self, graph, in_shapes, prefix):
        shapes = {id(t): tuple(s) for t, s in zip(graph.inputs, in_shapes)}
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                layer = node.layer
                inputs = tf.nest.flatten(node.keras_inputs)
                if isinstance(layer, keras.layers.InputLayer) or any(id(t) not in shapes for t in inputs):
                    continue
                shapes_in = [shapes[id(t)] for t in inputs]
                if isinstance(layer, keras.Model):
                    shapes_out = self.trace(layer, shapes_in, f"{prefix}{layer.name}/")
                else:
                    arg = node.call_args[0] if node.call_args else node.keras_inputs
                    arg = tf.nest.map_structure(lambda t: tf.TensorShape(shapes[id(t)]), arg)
                    shapes_out = _shape_list(layer.compute_output_shape(arg))
                    self.add(prefix + layer.name, layer, shapes_in, shapes_out)
                for tensor, shape in zip(tf.nest.flatten(node.outputs), shapes_out):
                    shapes[id(tensor)] = shape
        return [shapes[id(t)] for t in graph.outputs]


def _shape_list(shapes):
    """A list of shape tuples from one shape or a (nested) list of shapes."""
    if isinstance(shapes, tf.TensorShape) or (
        isinstance(shapes, (tuple, list)) and all(d is None or isinstance(d, int) for d in shapes)
    ):
        shapes = [shapes]
    return [tuple(None if d is None else int(d) for d in tuple(s)) for s in shapes]


def _resolve_shape(model, input_shape):
    """The concrete input shape without batch (``input_shape`` merged with the model's)."""
    from keras_convzoo.input_shapes import concrete_input_shape, model_input

    model_shape, _, _ = model_input(model, what="count_flops")
    return concrete_input_shape(model_shape, input_shape)


def count_flops(model, input_shape=None):
    """Counts the multiply-accumulates (MACs) of a model for one input at a given size.

    The model's graph is traced at the concrete input size (``None``
    dimensions filled from ``input_shape``) without running or changing the
    model, and each layer call is costed from its input and output shapes:

    - ``Conv1D/2D/3D``: ``prod(kernel) * C_in / groups * C_out * output
      positions``; ``layers.GroupConv2D`` the same (its nominal grouped
      count, whatever the lowering); transposed convolutions per input
      position.
    - ``DepthwiseConv1D/2D``: ``prod(kernel) * C * multiplier * positions``;
      ``SeparableConv*`` adds the pointwise ``C * multiplier * C_out``.
    - ``Dense``: ``C_in * C_out`` at every position of a >2D input.
    - ``layers.ReparamLargeKernelConv``: both depthwise kernels
      (``k^2 + s^2``) in the training form, the merged ``k^2`` one when
      ``deploy=True``. ``layers.ShiftConv2D``: its pointwise conv only (the
      shift is free). ``layers.SqueezeExcite``: its two matrix products.
    - ``layers.CKConv/FlexConv/SeparableFlexConv``: the kernel network
      (``kernel_network_macs``: MAGNet per kernel tap ``num_layers + 1``
      Gabor filters of ``dims * hidden``, ``num_layers`` products of
      ``hidden * hidden`` and the ``hidden * kernel_channels`` output layer;
      SIREN/MLP likewise; taps after the crop of the mask in its current
      state; none for ``deploy=True`` layers) plus the convolution by the
      algorithm the layer runs (its ``uses_fft``): direct (``taps * C *
      positions`` depthwise, ``taps * C_in * C_out * positions`` dense) or
      FFT over the lengths the ops use (5-smooth, at least ``size + taps -
      1`` per axis): each real FFT of ``N`` points costs ``N log2 N``
      (``fft_macs``), a complex spectrum product 4 real MACs per frequency
      bin; depthwise runs ``3 * C`` FFTs and ``C * bins`` products, dense
      ``C_in + C_in * C_out + C_out`` FFTs and ``C_in * C_out * bins``
      products; separable layers add the pointwise ``C_in * C_out *
      positions``. The kernel network and kernel FFTs run once per call; the
      figure is for batch 1.
    - Zero by convention (papers, PyTorch's FlopCounterMode): batch and layer norms,
      activations, pooling, adds and multiplies, biases, padding, resampling.
      Layers with weights that no rule covers count zero and are listed in
      ``uncounted``.

    MACs, not FLOPs (one FLOP count is about two MACs). On timm's
    ResNeXt50-32x4d, SE-ResNet50, MobileNetV2-1.0 and ConvNeXt-T the totals
    equal PyTorch's ``FlopCounterMode`` (halved) exactly and are within 0.7%
    of timm's published GMACs (4.23G against 4.26G for ResNeXt50-32x4d at
    224x224: timm's counter also charges normalizations).

    Args:
        model: a built functional Keras model (Keras 3; tf_keras models work
            too) with one input. Nested functional models are walked.
        input_shape: the input shape without batch, e.g. ``(224, 224, 3)``,
            or the spatial sizes only, e.g. ``(224, 224)``. Needed when the
            model has ``None`` dimensions; known dimensions must agree.

    Returns:
        A ``MacCount`` with ``total``, ``by_type``, ``by_layer``,
        ``input_shape`` and ``uncounted``.

    Raises:
        ValueError: for a bad ``input_shape``, one that disagrees with the
            model, or none for a model with ``None`` dimensions.
        TypeError: for a model without a graph (a subclassed model).

    Example:
    >>> model = keras_convzoo.ResNeXt50(input_shape=(None, None, 3), include_top=False)
    >>> macs = count_flops(model, input_shape=(224, 224, 3))
    >>> print(f"{macs.gmacs:.2f} GMACs", macs.by_type["GroupConv2D"])
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a functional keras.Model. Received: {type(model).__name__}")
    shape = _resolve_shape(model, input_shape)
    counter = _Counter()
    counter.trace(model, [(1,) + shape])
    by_type = dict(sorted(counter.by_type.items(), key=lambda kv: -kv[1]))
    return MacCount(
        total=int(sum(counter.by_layer.values())),
        by_type=by_type,
        by_layer=dict(counter.by_layer),
        input_shape=shape,
        uncounted=tuple(sorted(counter.uncounted)),
        traffic_bytes=int(counter.traffic),
    )
