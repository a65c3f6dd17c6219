"""Update transforms over stacked client updates ([C, ...] leaves)."""

from fedjax_lab.transforms.base import RoundContext, Transform, chain, identity, make_context, stateless
