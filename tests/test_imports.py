"""The house: no import circle inside vlae_jax (function-local imports too)."""

import ast
import glob
import os

from conftest import ROOT


def import_graph():
  graph = {}
  for path in glob.glob(os.path.join(ROOT, "vlae_jax", "*.py")):
    name = os.path.splitext(os.path.basename(path))[0]
    edges = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "vlae_jax":
          edges |= {a.name for a in node.names}
        elif node.module.startswith("vlae_jax."):
          edges.add(node.module.split(".")[1])
      elif isinstance(node, ast.Import):
        edges |= {a.name.split(".")[1] for a in node.names
                  if a.name.startswith("vlae_jax.")}
    graph[name] = edges - {name}
  return graph


def test_no_import_circle_inside_vlae_jax():
  graph = import_graph()
  assert "experiment" in graph["analysis"] and "train" not in graph["analysis"]
  state, cycles = {}, []

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if nxt not in graph:
        continue  # a name imported from the package, not a module
      if state.get(nxt) == "open":
        cycles.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)
