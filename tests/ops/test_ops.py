import pytest

from keras_convzoo.ops import make_divisible, same_padding_amounts, se_channels


@pytest.mark.parametrize(
    "value,expected",
    [(32 * 0.35, 16), (32 * 0.5, 16), (24 * 0.75, 24), (1280 * 1.3, 1664), (1280 * 1.4, 1792), (5, 8), (26, 24), (27, 32)],
)
def test_make_divisible_matches_mobilenet_rule(value, expected):
    assert make_divisible(value, 8) == expected


def test_make_divisible_round_limit():
    # 9 rounds down to 8, which is < 0.9 * 9 -> +8 with the keras rule, kept with round_limit=0
    assert make_divisible(9.5, 8) == 16
    assert make_divisible(9.5, 8, round_limit=0.0) == 8


def test_se_channels():
    assert se_channels(64) == 8  # timm seresnet18 stage 1
    assert se_channels(256) == 16
    assert se_channels(2048) == 128
    assert se_channels(256, divisor=None) == 16
    assert se_channels(20, 0.25, divisor=None) == 5
    with pytest.raises(ValueError, match="ratio"):
        se_channels(64, ratio=0)
    with pytest.raises(ValueError, match="divisor"):
        make_divisible(10, 0)


def test_padding_amounts():
    assert same_padding_amounts(7) == ((3, 3), (3, 3))
    assert same_padding_amounts(3, (None, None), "keras") == ((0, 1), (0, 1))
    assert same_padding_amounts(3, (97, 131), "keras") == ((1, 1), (1, 1))
    assert same_padding_amounts(3, (96, 131), "keras") == ((0, 1), (1, 1))
    # keras.applications looks at the height only when deciding "unknown"
    assert same_padding_amounts(3, (None, 131), "keras") == ((0, 1), (0, 1))
    with pytest.raises(ValueError, match="padding_mode"):
        same_padding_amounts(3, mode="reflect")
