"""conftest.longest_first: the suite's longest tests open the workers'
shares; the order is a permutation of what pytest collected."""

from conftest import LONGEST_FIRST, longest_first


class Item:
  def __init__(self, nodeid):
    self.nodeid = nodeid


def shares(items, workers):
  """The shares xdist's work-stealing scheduler first hands out, in turn."""
  out, start, remaining = [], 0, len(items)
  for w in range(workers):
    size = remaining // (workers - w)
    out.append(items[start:start + size])
    start, remaining = start + size, remaining - size
  return out


def test_the_longest_open_each_share_and_nothing_is_lost_or_repeated():
  others = [Item(f"tests/test_x.py::test_{i}") for i in range(40)]
  longest = [Item(name) for name in LONGEST_FIRST[:5]]
  items = others[:17] + longest[::-1] + others[17:]
  ordered = longest_first(items, 3)
  assert sorted(i.nodeid for i in ordered) == sorted(i.nodeid for i in items)
  first, second, third = shares(ordered, 3)
  assert [i.nodeid for i in first[:2]] == [LONGEST_FIRST[0], LONGEST_FIRST[3]]
  assert [i.nodeid for i in second[:2]] == [LONGEST_FIRST[1], LONGEST_FIRST[4]]
  assert third[0].nodeid == LONGEST_FIRST[2]
  rest = [i for i in ordered if i.nodeid not in LONGEST_FIRST]
  assert rest == others  # the others keep their order


def test_one_worker_or_no_long_test_keeps_the_order():
  items = [Item(f"tests/test_x.py::test_{i}") for i in range(10)]
  assert longest_first(items, 3) == items
  assert longest_first(items, 1) == items
