"""The robust-aggregator registry: names, derived f / beta, and Byzantine-fraction errors."""

import pytest

from fedjax_lab import aggregators


def test_every_name_builds():
  for name in aggregators.ROBUST_AGGREGATORS:
    kwargs = {'centered_clipping': {'tau': 1.0}, 'norm_bounded_mean': {'max_norm': 1.0}}.get(name, {})
    agg = aggregators.get_robust_aggregator(name, 0.1, clients_per_round=20, **kwargs)
    assert callable(agg.aggregate)


def test_unknown_name_lists_choices():
  with pytest.raises(ValueError, match=r"Unknown aggregator 'medain'.*config.aggregator.name.*median"):
    aggregators.get_robust_aggregator('medain')


@pytest.mark.parametrize('name', ['median', 'trimmed_mean', 'krum', 'multi_krum', 'bulyan',
                                  'geometric_median'])
def test_honest_majority_rules_reject_half_byzantine(name):
  with pytest.raises(ValueError, match=r'byzantine_fraction=0.5 >= 0.5'):
    aggregators.get_robust_aggregator(name, 0.5, clients_per_round=20)


def test_fraction_beyond_breakdown_of_f_rules():
  # 20 clients, 30% Byzantine: f = 6; Krum needs n > 14 (ok), Bulyan needs n >= 27 (fails).
  assert aggregators.num_byzantine(0.3, 20) == 6
  assert aggregators.num_byzantine(0.2, 10) == 2
  aggregators.get_robust_aggregator('krum', 0.3, clients_per_round=20)
  with pytest.raises(ValueError, match=r'bulyan: f=6.*n >= 4f \+ 3 = 27'):
    aggregators.get_robust_aggregator('bulyan', 0.3, clients_per_round=20)
  with pytest.raises(ValueError, match='give f or clients_per_round'):
    aggregators.get_robust_aggregator('krum', 0.2)
  with pytest.raises(ValueError, match=r'byzantine_fraction=1.0 must be in \[0, 1\)'):
    aggregators.get_robust_aggregator('mean', 1.0)
