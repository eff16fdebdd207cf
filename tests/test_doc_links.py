"""Every relative link and image in the README, docs/ and the results
ledger names a file that exists: a moved or deleted result breaks a test,
not a reader's click."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "results/README.md"] + [
    os.path.join("docs", name) for name in sorted(os.listdir(
        os.path.join(ROOT, "docs"))) if name.endswith(".md")]
# ](target) with an optional #anchor; absolute URLs and pure anchors skipped.
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def relative_links(page):
  text = open(os.path.join(ROOT, page), encoding="utf-8").read()
  return [target for target in LINK.findall(text)
          if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_names_a_file_that_exists(page):
  folder = os.path.dirname(os.path.join(ROOT, page))
  links = relative_links(page)
  missing = [target for target in links
             if not os.path.exists(os.path.join(folder, target))]
  assert not missing, f"{page}: {missing}"


def test_the_link_pattern_finds_links_and_images():
  assert LINK.findall("see [a](x/y.json) and ![](f.png#top) [u](http://z)") \
      == ["x/y.json", "f.png", "http://z"]
  # The ledger links each run's files: a pattern that found none would pass
  # the test above for nothing.
  assert len(relative_links("results/README.md")) > 50
