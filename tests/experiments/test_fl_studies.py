"""Pure helpers of experiments/fl_studies.py (the studies themselves are run by hand, minutes each)."""

import numpy as np

from experiments import fl_studies


def test_rounds_to_target_is_first_hit_one_based():
  assert fl_studies.rounds_to_target(np.array([0.1, 0.5, 0.92, 0.85, 0.95]), 0.9) == 3
  assert fl_studies.rounds_to_target(np.array([0.1, 0.5]), 0.9) is None


def test_comm_table_reports_speedup_and_misses():
  rows = [dict(partition='iid', algorithm='FedSGD', u=1.0, rounds=40, speedup=1.0, max_rounds=100),
          dict(partition='iid', algorithm='FedAvg E=5 B=10', u=40.0, rounds=10, speedup=4.0, max_rounds=100),
          dict(partition='shards', algorithm='FedSGD', u=1.0, rounds=50, speedup=1.0, max_rounds=100),
          dict(partition='shards', algorithm='FedAvg E=5 B=10', u=40.0, rounds=None, speedup=None, max_rounds=100)]
  table = fl_studies.comm_markdown({'target': 0.9, 'rows': rows})
  assert '| FedAvg E=5 B=10 | 40 | 10 (4.0x) | > 100 |' in table


def test_small_configs_load():
  for study in fl_studies.STUDIES:
    config = fl_studies.load_config(study, small=True)
    assert config.rounds <= 5
