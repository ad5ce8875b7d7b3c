import pytest
import torch

from saekit.analysis.features import parse_feature_spec, resolve_features
from saekit.errors import FeatureSpecError


def test_indices_and_ranges_in_order_without_duplicates():
    assert resolve_features("0,5,10", 20) == [0, 5, 10]
    assert resolve_features("0-3", 20) == [0, 1, 2, 3]
    assert resolve_features("0-2,10-11,1", 20) == [0, 1, 2, 10, 11]


def test_top_uses_firing_counts_ties_by_index():
    counts = torch.tensor([5, 9, 9, 0, 7])
    assert resolve_features("top:3", 5, firing_counts=counts) == [1, 2, 4]


def test_active_uses_prompt_scores():
    scores = torch.tensor([0.0, 3.0, 0.0, 1.0])
    seen = []

    def fn(p):
        seen.append(p)
        return scores

    assert resolve_features('active:"hello, world"', 4, prompt_scores=fn) == [1, 3]
    assert seen == ["hello, world"]
    assert resolve_features('active:1:"x"', 4, prompt_scores=fn) == [1]


@pytest.mark.parametrize("spec", ["", "a", "3-1", "1,,2", "top:0", "top:x", 'active:"', "1.5", "-3"])
def test_bad_syntax(spec):
    with pytest.raises(FeatureSpecError):
        parse_feature_spec(spec)


def test_out_of_range_names_valid_range():
    with pytest.raises(FeatureSpecError, match=r"0\.\.9"):
        resolve_features("5,10", 10)
    with pytest.raises(FeatureSpecError, match="out of range"):
        resolve_features("8-12", 10)


def test_top_and_active_need_data():
    with pytest.raises(FeatureSpecError, match="firing"):
        resolve_features("top:3", 10)
    with pytest.raises(FeatureSpecError, match="model"):
        resolve_features('active:"hi"', 10)
