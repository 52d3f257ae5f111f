"""inferlab.execution's memory sampler: the peak of a whole process tree, children and grandchildren."""
import subprocess
import sys
import textwrap
import time

from inferlab.execution import TreeMemory

# A child that holds 200 MiB and starts a grandchild that holds 150 MiB, both touched page by page.
TREE = textwrap.dedent("""
    import subprocess, sys, time
    hold = bytearray(200 * 2**20)
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(150 * 2**20); import time; time.sleep(4)"])
    time.sleep(4)
    child.wait()
""")


def test_the_peak_counts_children_and_grandchildren_once_each():
    proc = subprocess.Popen([sys.executable, "-c", TREE])
    with TreeMemory(proc.pid, interval=0.2) as memory:
        proc.wait(timeout=60)
        time.sleep(0.1)
    assert 350 * 2**20 <= memory.peak < 700 * 2**20, memory.peak / 2**20


def test_a_process_that_is_gone_reads_as_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert TreeMemory(proc.pid).sample() == 0
