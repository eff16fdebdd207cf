"""The house: no import circle inside vlae_jax (function-local imports too)."""

import ast
import glob
import os

from conftest import ROOT


def module_name(path):
  """vlae_jax/train.py -> "train"; vlae_jax/datasets/celeba.py ->
  "datasets.celeba"; a package's __init__.py -> the package's name."""
  parts = os.path.relpath(path, os.path.join(ROOT, "vlae_jax"))[:-3].split(
      os.sep)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
  """``{module: the vlae_jax modules it imports}``, function-local imports
  included; a package's submodules are modules of their own."""
  paths = glob.glob(os.path.join(ROOT, "vlae_jax", "**", "*.py"),
                    recursive=True)
  modules = {module_name(p) for p in paths}
  graph = {}
  for path in paths:
    name = module_name(path)
    edges = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.ImportFrom) and node.module and \
          (node.module == "vlae_jax" or node.module.startswith("vlae_jax.")):
        base = node.module[len("vlae_jax."):] if "." in node.module else ""
        for alias in node.names:
          full = f"{base}.{alias.name}" if base else alias.name
          edges.add(full if full in modules else base)
      elif isinstance(node, ast.Import):
        edges |= {a.name[len("vlae_jax."):] for a in node.names
                  if a.name.startswith("vlae_jax.")}
    graph[name] = edges - {name, ""}
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


def test_the_design_table_lists_every_module_and_its_imports():
  """docs/DESIGN.md's module table is the code's: every module once, with
  the vlae_jax modules it imports."""
  graph = import_graph()
  documented = {}
  with open(os.path.join(ROOT, "docs", "DESIGN.md")) as f:
    for line in f:
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      if len(cells) == 4 and cells[1].startswith("`") and cells[1].endswith(
          ".py`"):
        name = cells[1].strip("`")[:-3].replace("/__init__", "").replace(
            "/", ".")
        assert name not in documented, f"{name} listed twice"
        documented[name] = set() if cells[3] == "-" else {
            m.strip() for m in cells[3].split(",")}
  actual = {name: {m for m in edges if m in graph}
            for name, edges in graph.items() if name}
  assert documented == actual


def test_an_installed_package_holds_every_module():
  """pyproject.toml's package list finds every folder of vlae_jax's modules
  (a `pip install .` without a subpackage imports nothing of it)."""
  import pytest
  import setuptools
  try:
    import tomllib
  except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
  found = set(setuptools.find_packages(ROOT, include=find["include"]))
  folders = {os.path.relpath(os.path.dirname(p), ROOT).replace(os.sep, ".")
             for p in glob.glob(os.path.join(ROOT, "vlae_jax", "**", "*.py"),
                                recursive=True)}
  assert folders <= found, folders - found
