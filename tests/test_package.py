"""Package-level contract: public names, and no optional dependency imported."""

import subprocess
import sys

import keras_convzoo as kcz

PUBLIC = [
    "ResNeXt50", "ResNeXt101", "SEResNet18", "SEResNet34", "SEResNet50", "SEResNet101",
    "SEResNet152", "SEResNeXt50", "SEResNeXt101", "MobileNetV2", "ConvNeXtTiny", "ConvNeXtSmall",
    "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge", "RepLKNet31B", "RepLKNet31L", "CCNN", "ShuffleNetV2",
    "list_models", "create_model", "preprocess_input", "decode_predictions", "list_pretrained",
    "preprocessing_layers",
    "get_spec", "layers", "blocks", "export", "weights", "profile",
]


def test_public_names():
    for name in PUBLIC:
        assert hasattr(kcz, name), name
    assert kcz.layers.GroupConv2D and kcz.layers.SqueezeExcite
    assert kcz.blocks.bottleneck_block and kcz.blocks.inverted_residual_block


def test_import_pulls_no_optional_dependency():
    code = (
        "import sys, keras_convzoo;"
        "bad = [m for m in ('tf2onnx', 'onnx', 'onnxruntime', 'ai_edge_litert', 'pytest',"
        " 'tensorflow_model_optimization', 'torch', 'timm', 'safetensors', 'keras_cv')"
        " if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
