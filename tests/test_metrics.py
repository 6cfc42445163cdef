"""Statistics of qfit.profile.metrics on hand-computed numbers."""

import math

import pytest

from qfit.profile import metrics as m


def test_perplexity_and_delta_method_se():
    nll = [1.0, 2.0, 3.0]  # mean 2, sample sd 1
    est = m.perplexity(nll)
    assert est.value == pytest.approx(math.exp(2))
    assert est.se == pytest.approx(math.exp(2) * 1 / math.sqrt(3))
    assert est.n == 3


def test_perplexity_of_uniform_prediction_is_vocab_size():
    # a model that spreads mass evenly over 4 tokens has NLL log 4 on every token: ppl 4, no spread
    est = m.perplexity([math.log(4)] * 10)
    assert est.value == pytest.approx(4.0)
    assert est.se == 0.0


@pytest.mark.parametrize("base,model,expected", [
    ([0.0, 0.0], [0.0, 0.0], 0.0),                     # identical distributions
    ([0.0, math.log(3)], [0.0, 0.0], 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)),  # p=(.25,.75) q=(.5,.5)
    ([1.0, 2.0, 3.0], [11.0, 12.0, 13.0], 0.0),        # logits shifted by a constant: same softmax
])
def test_kl_divergence(base, model, expected):
    assert m.kl_divergence(base, model) == pytest.approx(expected, abs=1e-12)


def test_kl_is_asymmetric_and_positive():
    p, q = [0.0, 2.0], [1.0, 0.0]
    assert m.kl_divergence(p, q) > 0 and m.kl_divergence(q, p) > 0
    assert m.kl_divergence(p, q) != pytest.approx(m.kl_divergence(q, p))


def test_log_softmax_sums_to_one():
    lp = m.log_softmax([3.0, 1.0, -2.0, 0.5])
    assert math.fsum(math.exp(x) for x in lp) == pytest.approx(1.0)


def test_proportion_binomial_se():
    est = m.proportion([1, 1, 0, 1])
    assert est.value == 0.75
    assert est.se == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_mc_accuracy_acc_vs_acc_norm():
    # choice 0 wins on raw log-likelihood (-4 > -6) but loses per byte (-4/2 = -2 < -6/6 = -1)
    item = m.ChoiceScores(loglik=(-4.0, -6.0), nbytes=(2, 6), gold=1)
    res = m.mc_accuracy([item, m.ChoiceScores((-1.0, -3.0, -2.0), (1, 1, 1), 0)])
    assert res["correct"] == [False, True]
    assert res["correct_norm"] == [True, True]
    assert res["acc"].value == 0.5 and res["acc_norm"].value == 1.0


def test_mc_gold_out_of_range():
    with pytest.raises(ValueError):
        m.score_item(m.ChoiceScores((-1.0, -2.0), (1, 1), 2))


def test_retained_identical_is_exactly_100_with_zero_width():
    xs = [1.0, 0.0, 1.0, 1.0, 0.0]
    r = m.retained_ratio(xs, xs)
    assert (r.value, r.low, r.high) == (pytest.approx(100.0), pytest.approx(100.0), pytest.approx(100.0))


def test_retained_delta_method_by_hand():
    model, base = [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]
    # means 0.5 and 0.75 -> r = 2/3; var(m)=1/3, var(b)=1/4, cov(m,b)=1/6 (n-1 denominators)
    r = 2 / 3
    var = (1 / 3 - 2 * r * (1 / 6) + r * r * 0.25) / (4 * 0.75 ** 2)
    res = m.retained_ratio(model, base)
    assert res.value == pytest.approx(100 * r)
    assert res.se == pytest.approx(100 * math.sqrt(var))
    assert res.low == pytest.approx(100 * (r - m.Z95 * math.sqrt(var)))


def test_retained_needs_paired_items():
    with pytest.raises(ValueError):
        m.retained_ratio([1.0], [1.0, 0.0])


def test_ppl_ratio_paired():
    res = m.ppl_ratio([2.0, 3.0], [1.0, 2.0])  # every token exactly one nat worse
    assert res.value == pytest.approx(math.e)
    assert res.low == pytest.approx(math.e) and res.high == pytest.approx(math.e)


def test_percentiles_match_numpy_linear():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert m.percentile(xs, 50) == 3.0
    assert m.percentile(xs, 90) == pytest.approx(4.6)
    assert m.percentile(xs, 0) == 1.0 and m.percentile(xs, 100) == 5.0


def test_summarize_spread():
    s = m.summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.p50, s.std, s.min, s.max) == (2.0, 2.0, 1.0, 1.0, 3.0)
    assert s.cv == pytest.approx(0.5)


def test_torch_kl_path_matches_reference():
    torch = pytest.importorskip("torch")
    base = [[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]]
    model = [[0.3, 1.5, -0.5], [2.0, 0.1, 0.4]]
    lb = torch.log_softmax(torch.tensor(base), -1)
    lm = torch.log_softmax(torch.tensor(model), -1)
    kl = (lb.exp() * (lb - lm)).sum(-1).tolist()  # the expression qfit.profile.accuracy uses
    assert kl == pytest.approx([m.kl_divergence(b, q) for b, q in zip(base, model)], rel=1e-5)
