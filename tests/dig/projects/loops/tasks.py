"""Task code of the run-time loop workflows (tests/dig/test_runtime_loops.py)."""

import digdag


def list_tables():
    digdag.env.store({"tables": ["users", "orders", "items"], "count": 3})


def remember(table, i=None):
    digdag.env.store({"last_" + table: "seen " + table})


def fail_on(i, bad):
    if int(i) == int(bad):
        raise RuntimeError(f"iteration {i} breaks")


def own_copy_only(table, **params):
    """Run after remember() in the same copy: sees what its copy stored, not the other copies'."""
    seen = sorted(k for k in params if k.startswith("last_"))
    print(f"copy {table} sees {seen}")
    if seen != ["last_" + table]:
        raise AssertionError(f"copy {table} sees {seen}")
