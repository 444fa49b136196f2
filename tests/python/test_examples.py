"""The article's programs in examples/python/, run with the launcher (`stackless FILE`) and
compared with examples/python/expected/*.txt, which for Listings 1, 2, 4-5 are the outputs of
the C++ versions (examples/cpp/expected/)."""
import os
import pathlib
import random
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
LAUNCHER = os.environ.get("STACKLESS_LAUNCHER", str(ROOT / "stackless"))


def run_example(name, *args):
    return subprocess.run([LAUNCHER, str(EXAMPLES / (name + ".py"))] + list(args),
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))


@pytest.mark.parametrize("name, args", [("listing1", ()), ("listing2", ()), ("sort", ()),
                                        ("network_simulation", ()), ("squareroot", ("2",)),
                                        ("migrate", ()), ("threads", ())])
def test_example_prints_the_expected_output(name, args):
    r = run_example(name, *args)
    assert r.returncode == 0, "exit status %d\nstderr:\n%s" % (r.returncode, r.stderr)
    assert r.stderr == ""
    assert r.stdout == (EXAMPLES / "expected" / (name + ".txt")).read_text()


@pytest.mark.parametrize("name", ["listing1", "listing2", "network_simulation"])
def test_expected_outputs_are_those_of_the_cpp_examples(name):
    cpp = ROOT / "examples" / "cpp" / "expected" / (name + ".txt")
    assert (EXAMPLES / "expected" / (name + ".txt")).read_text() == cpp.read_text()


def test_expected_squareroot_output_is_the_articles():
    # The article's Listing 6 output for `stackless squareroot.py 2`.
    article = (ROOT.parent / "shared" / "seed" / "stackless-article.md")
    expected = (EXAMPLES / "expected" / "squareroot.txt").read_text()
    assert expected.startswith("Square root of 2.0\n-----\n0 : 2.0\n")
    if article.exists():
        text = article.read_text()
        block = text[text.index("$ stackless squareroot.py 2\n"):]
        block = block[len("$ stackless squareroot.py 2\n"):block.index("```")]
        assert expected == block


def test_squareroot_of_another_number_continues_after_unpickling():
    r = run_example("squareroot", "9")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["Square root of 9.0", "-----", "0 : 9.0", "1 : 5.0"]
    assert lines[5:7] == ["pickle", "unpickle"]
    assert lines[-1].startswith("4 : 3.0000")


def test_expected_sort_output_is_listing3_with_seed_2007():
    random.seed(2007)
    numbers = list(range(20))
    random.shuffle(numbers)
    expected = "%s\nSorting...\n%s\n" % (numbers, list(range(20)))
    assert (EXAMPLES / "expected" / "sort.txt").read_text() == expected


@pytest.mark.parametrize("seed", ["1", "12345", "random"])
def test_sort_sorts_any_shuffle(seed):
    r = run_example("sort", seed)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"\[(\d+, ){19}\d+\]", lines[0])
    assert sorted(int(x) for x in lines[0][1:-1].split(", ")) == list(range(20))
    assert lines[1] == "Sorting..."
    assert lines[2] == str(list(range(20)))
    if seed != "random":
        random.seed(int(seed))
        numbers = list(range(20))
        random.shuffle(numbers)
        assert lines[0] == str(numbers)
