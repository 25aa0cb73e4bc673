"""keras_convzoo/data/models.json (read by the CLI and the docs without TensorFlow) matches the registry."""

import pytest

from keras_convzoo.applications import index, list_models
from keras_convzoo.profile import model_index


def test_index_lists_every_registered_model_with_its_registry_metadata():
    entries = {e["name"]: e for e in index.read_index()["models"]}
    assert sorted(entries) == list_models()
    for name in list_models():
        assert {k: entries[name][k] for k in index.SPEC_FIELDS} == index.spec_facts(name), name


@pytest.mark.parametrize("name", ["mobilenetv2_035", "shufflenet_v2_x0_5", "ccnn_4_140"])
def test_index_counts_equal_a_fresh_build(name):
    # Parameters, MACs, layers and the reference check of the file are those of the model built now.
    entries = {e["name"]: e for e in index.read_index()["models"]}
    assert entries[name] == model_index.model_facts(name)


@pytest.mark.slow
def test_whole_index_is_current():
    import json

    built = json.loads(json.dumps(model_index.build_index()))  # tuples as the file has them
    assert built["models"] == index.read_index()["models"], "run python tools/make_model_index.py"


def test_index_reference_check_is_exact():
    # The generator's reference check: MobileNetV2 1.0 equals keras.applications' trainable count.
    entry = {e["name"]: e for e in index.read_index()["models"]}["mobilenetv2_100"]
    assert entry["params"]["trainable"] == entry["reference_params"] == 3504872
    assert entry["matches_reference"] is True and entry["macs"] == 300774272


def test_readme_model_table_is_the_generated_one():
    import os

    readme = open(os.path.join(os.path.dirname(index.INDEX_PATH), "..", "..", "README.md"), encoding="utf-8").read()
    table = readme.split("<!-- model table: begin -->\n", 1)[1].split("\n<!-- model table: end -->", 1)[0]
    assert table == index.markdown_table(), "run python tools/make_model_index.py"
    assert table.count("\n| `") == len(list_models())
    assert "| `resnext50_32x4d` | `ResNeXt50` | 25.0M | 4.23G | 224x224 | timm `a1h_in1k` |" in table
