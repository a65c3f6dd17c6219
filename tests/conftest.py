"""Shared test set-up: 8 fake CPU devices unless the environment already chose a count."""

import os

if 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('FEDJAX_LAB_CACHE', os.path.join(os.path.dirname(__file__), '..', '.cache_tests'))
