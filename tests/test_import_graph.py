"""The import graph of fedjax_lab: no cycles, and no reaching into another module's private names.

The graph is read from the source with `ast` (nothing is imported), counting every import
statement: module level, inside functions (lazy imports) and under `if TYPE_CHECKING`. An edge
goes to the submodule when one is named (`from fedjax_lab.data import host` -> data.host), else
to the package's `__init__`. Two levels are checked:

  modules   no cycle among fedjax_lab's modules (a package's `__init__` is a module);
  packages  no cycle among the subpackages and top-level modules below `fedjax_lab` (aggregators,
            transforms, cohort, ...): importing `fedjax_lab.x.y` runs `fedjax_lab/x/__init__.py`,
            so a cycle between packages is a runtime cycle even when no two modules form one.
            `fedjax_lab/__init__.py` itself, which imports every package, is left out.

Private: `from a.b import _name` is refused unless `_name` is a module of the importer's own
package; `fedjax_lab.x._private` (a private module) may be imported only from inside `fedjax_lab.x`.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / 'fedjax_lab'


def module_files(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
  """Dotted module name -> file, for every .py under `root` (packages named by their __init__)."""
  modules = {}
  for path in sorted(root.rglob('*.py')):
    parts = list(path.relative_to(root.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
      parts = parts[:-1]
    modules['.'.join(parts)] = path
  return modules


class Import:
  """One imported name: importer, the module it resolves to, the name as written, the line."""

  def __init__(self, importer, target, written, lineno):
    self.importer, self.target, self.written, self.lineno = importer, target, written, lineno

  def __repr__(self):
    return f'{self.importer}:{self.lineno} imports {self.written}'


def imports_of(module: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> list[Import]:
  """Every fedjax_lab import in one file, resolved to modules of `modules`."""
  is_package = path.name == '__init__.py'
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split('.')[0] == ROOT.name:
          found.append(Import(module, alias.name, alias.name, node.lineno))
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = module.split('.') if is_package else module.split('.')[:-1]
        base = base[:len(base) - node.level + 1]
        source = '.'.join(base + ([node.module] if node.module else []))
      else:
        source = node.module or ''
      if source.split('.')[0] != ROOT.name:
        continue
      for alias in node.names:
        full = f'{source}.{alias.name}'
        found.append(Import(module, full if full in modules else source, full, node.lineno))
  return [i for i in found if i.target in modules]


def import_graph(root: pathlib.Path = ROOT) -> tuple[dict[str, set[str]], list[Import]]:
  """module -> modules it imports (self-edges dropped), and the list of every import."""
  modules = module_files(root)
  every = [i for name, path in modules.items() for i in imports_of(name, path, modules)]
  graph = {name: set() for name in modules}
  for i in every:
    if i.target != i.importer:
      graph[i.importer].add(i.target)
  return graph, every


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle [a, b, ..., a] of a directed graph, or None when it is acyclic."""
  state = {}  # node -> 'open' while on the DFS stack, 'done' after

  def visit(node, stack):
    state[node] = 'open'
    stack.append(node)
    for succ in sorted(graph.get(node, ())):
      if state.get(succ) == 'open':
        return stack[stack.index(succ):] + [succ]
      if succ not in state:
        cycle = visit(succ, stack)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [])
      if cycle:
        return cycle
  return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
  """The module graph collapsed to fedjax_lab's direct children (top-level package left out)."""
  def group(module):
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else None

  packages = {}
  for module, targets in graph.items():
    source = group(module)
    if source is None:
      continue
    packages.setdefault(source, set())
    packages[source] |= {group(t) for t in targets if group(t) not in (None, source)}
  return packages


def private_imports(every: list[Import]) -> list[Import]:
  """Imports that reach a private name of another module or a private module of another package."""
  bad = []
  for i in every:
    importer_package = i.importer.rsplit('.', 1)[0]
    parts = i.written.split('.')
    if parts[-1].startswith('_') and not parts[-1].startswith('__'):
      is_module = i.target == i.written
      # A private module of the importer's own package is fine; a private name never is.
      owner = i.written.rsplit('.', 1)[0]
      if not is_module or owner not in (importer_package, i.importer):
        bad.append(i)
        continue
    for depth, part in enumerate(parts[:-1]):
      if part.startswith('_') and not part.startswith('__'):
        owner = '.'.join(parts[:depth])
        if not (i.importer == owner or i.importer.startswith(owner + '.')):
          bad.append(i)
          break
  return bad


def _cycle_message(cycle, every):
  lines = [f'  {a} -> {b} (line {", ".join(str(i.lineno) for i in every if i.importer == a and i.target == b)})'
           for a, b in zip(cycle, cycle[1:])]
  return 'import cycle:\n' + '\n'.join(lines)


def test_no_module_import_cycle():
  graph, every = import_graph()
  assert len(graph) > 50, 'the scan found too few modules; is ROOT right?'
  cycle = find_cycle(graph)
  assert cycle is None, _cycle_message(cycle, every)


def test_no_package_import_cycle():
  graph, _ = import_graph()
  packages = package_graph(graph)
  assert {'aggregators', 'transforms', 'attacks', 'cohort', 'topology', 'data'} <= set(packages)
  cycle = find_cycle(packages)
  assert cycle is None, 'package import cycle: ' + ' -> '.join(cycle)


def test_shared_cohort_layer_is_below_aggregators_transforms_and_attacks():
  packages = package_graph(import_graph()[0])
  assert packages['cohort'] == set(), 'fedjax_lab/cohort.py must import nothing from fedjax_lab'
  for user in ('aggregators', 'transforms', 'attacks'):
    assert 'cohort' in packages[user]
  assert 'aggregators' not in packages['transforms'] | packages['attacks']


def test_no_private_imports_across_modules():
  _, every = import_graph()
  assert private_imports(every) == []


# The checks themselves must be able to fail.


def test_find_cycle_finds_planted_cycles():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'x': {'y'}, 'y': set(), 'p': {'q'}, 'q': {'p'}}) == ['p', 'q', 'p']


@pytest.mark.parametrize('importer, written, target, ok', [
    ('fedjax_lab.aggregators.krum', 'fedjax_lab.aggregators._robust_utils',
     'fedjax_lab.aggregators._robust_utils', True),
    ('fedjax_lab.transforms.preaggregation', 'fedjax_lab.aggregators._robust_utils',
     'fedjax_lab.aggregators._robust_utils', False),
    ('fedjax_lab.topology.sharded', 'fedjax_lab.topology.gossip._select',
     'fedjax_lab.topology.gossip', False),
    ('fedjax_lab.attacks.backdoor', 'fedjax_lab.attacks.data._check_class', 'fedjax_lab.attacks.data',
     False),
    ('fedjax_lab.attacks.backdoor', 'fedjax_lab.attacks.data.check_class', 'fedjax_lab.attacks.data',
     True),
])
def test_private_rule(importer, written, target, ok):
  assert (private_imports([Import(importer, target, written, 1)]) == []) == ok


def test_lazy_imports_inside_functions_are_seen(tmp_path):
  package = tmp_path / 'fedjax_lab'
  (package / 'sub').mkdir(parents=True)
  (package / '__init__.py').write_text('')
  (package / 'sub' / '__init__.py').write_text('')
  (package / 'sub' / 'a.py').write_text('from fedjax_lab.sub import b\n')
  (package / 'sub' / 'b.py').write_text('def f():\n  from fedjax_lab.sub.a import g\n')
  graph, _ = import_graph(package)
  assert find_cycle(graph) == ['fedjax_lab.sub.a', 'fedjax_lab.sub.b', 'fedjax_lab.sub.a']
