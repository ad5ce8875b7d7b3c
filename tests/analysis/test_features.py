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


def test_readable_picks_features_spread_over_a_frequency_band():
    # firing frequencies in percent of 10,000 rows, feature j at freq[j]; shuffled so order is not index order
    freq = torch.tensor([10.0, 0.5, 0.01, 2.0, 0.06, 20.0, 1.5, 0.1, 5.0, 1.0])
    counts = freq * 100
    in_band = [4, 7, 1, 9, 6, 3]  # 0.06, 0.1, 0.5, 1, 1.5, 2 (%), in frequency order
    assert resolve_features("readable:6", 10, firing_counts=counts, n_rows=10_000) == in_band
    assert resolve_features("readable:3", 10, firing_counts=counts, n_rows=10_000) == [4, 1, 3]  # ends+mid
    assert resolve_features("readable:1", 10, firing_counts=counts, n_rows=10_000) == [9]
    assert resolve_features("readable:50", 10, firing_counts=counts, n_rows=10_000) == in_band  # all
    assert resolve_features("readable:2:4-25", 10, firing_counts=counts, n_rows=10_000) == [8, 5]
    with pytest.raises(FeatureSpecError, match="widen the band"):
        resolve_features("readable:2:30-40", 10, firing_counts=counts, n_rows=10_000)
    with pytest.raises(FeatureSpecError, match="firing frequencies"):
        resolve_features("readable:2", 10, firing_counts=counts)
    for bad in ("readable:0", "readable:x", "readable:3:2-1", "readable:3:a-b", "readable:3:5-101"):
        with pytest.raises(FeatureSpecError):
            resolve_features(bad, 10, firing_counts=counts, n_rows=10_000)
