"""The run-level fields every runner config starts from: `config = base.get_base_config()`.

Each field has the value a run takes when a config says nothing about it; configs override what
they need and add data, model and algorithm. Optional sections are off (name='none'; the
aggregator is the mean), so `--config.aggregator.name=krum --config.aggregator.f=1` or
`--config.topology.name=ring` work with every config. fedjax_lab/runner/builders.py describes
each field and refuses any other top-level field.
Study configs add:
  config.sweep: a tuple of {'name': str, 'overrides': {'section.field': value}}: the config is then a
    list of runs, each into WORKDIR/<name>/ (`fedjax_lab/runner/sweep.py`); () for one run.
  config.task: 'train' (default) or the name of an analysis in `fedjax_lab/runner/tasks` that writes
    JSON into the workdir instead of training; its arguments live in config.study.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'run'
  config.seed = 0
  config.rounds = 100
  config.eval_every = 10
  config.checkpoint_every = 100
  config.progress = True
  config.max_empty_round_fraction = 0.5  # warn when more rounds than this had no participant

  # The cohort: clients_per_round of the data's num_clients each round.
  config.clients_per_round = 10
  config.sampling = 'fixed_size'  # or 'poisson' (config.dp.sampling must match)
  config.sampling_overflow_probability = 1e-9  # poisson: P(members > cohort capacity) per round
  config.dropout_rate = 0.0
  config.deadline = float('inf')  # simulated seconds; clients slower than this drop out (inf: none)
  config.seconds_per_example = 1e-3
  config.speed_sigma = 0.5

  # How clients run: vmap / scan / chunked over `num_devices` devices; where the data lives.
  config.placement = 'auto'
  config.chunk_size = 0
  config.memory_budget_mb = 0.0  # with placement='chunked' and chunk_size=0: pick the chunk from this budget
  config.num_devices = 0  # 0: every usable core on CPU (one device each), every device on an accelerator
  # 'device': on the device(s), a copy per device while they fit ('replicated'), else 1/D each ('split');
  # 'host': clients stay in host memory, cohorts prefetched.
  config.data_placement = 'device'
  config.prefetch_depth = 1

  # Optional sections; each builder's arguments can be added as fields (`--config.dp.clip_norm=1`).
  config.aggregator = ml_collections.ConfigDict({'name': 'mean'})
  config.attack = ml_collections.ConfigDict({'name': 'none', 'fraction': 0.0})
  config.compression = ml_collections.ConfigDict({'name': 'none'})
  config.preaggregation = ml_collections.ConfigDict({'name': 'none'})
  config.dp = ml_collections.ConfigDict({'name': 'none'})
  config.topology = ml_collections.ConfigDict({'name': 'none', 'gossip': 'auto', 'allow_disconnected': False})

  # Studies (fedjax_lab/runner/sweep.py, fedjax_lab/runner/tasks, fedjax_lab/runner/simulated.py).
  config.sweep = ()
  config.task = 'train'
  # Extra test-time metrics: the global training loss sum_k n_k f_k(w) / n (at the node average for
  # gossip); backdoor success is added by itself when config.attack is a backdoor.
  config.evaluation = ml_collections.ConfigDict({'global_train_loss': False})
  # Simulated cluster of the data-parallel and asynchronous algorithms (fedjax_lab/runner/simulated.py).
  config.stragglers = ml_collections.ConfigDict({
      'distribution': 'none', 'factor': 1.0, 'num_slow': 0, 'probability': 0.0, 'scale': 0.0,
      'seconds_per_gradient': 1.0, 'message_seconds': 0.0, 'sync_seconds': 0.0})
  return config
