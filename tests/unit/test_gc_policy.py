"""daemon/gc_policy.py, in a process of its own (freezing is for the whole process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_tune_raises_only_the_young_threshold():
    out = run("""
        import gc
        from proxycheck.daemon import gc_policy
        before = gc.get_threshold()
        gc_policy.tune()
        after = gc.get_threshold()
        print(after[0] == gc_policy.YOUNG, after[1:] == before[1:])
    """)
    assert out == "True True"


def test_freeze_startup_collects_start_ups_garbage_first_and_freezes_the_rest():
    out = run("""
        import gc, weakref
        from proxycheck.daemon import gc_policy

        class Node:
            pass

        kept, dropped = Node(), Node()
        dropped.me = dropped  # start-up garbage in a cycle: it must be freed, not frozen forever
        gone = weakref.ref(dropped)
        del dropped
        gc.disable()
        gc_policy.freeze_startup()
        print(gone() is None, gc.get_freeze_count() > 0, not any(o is kept for o in gc.get_objects()))
    """)
    assert out == "True True True"
