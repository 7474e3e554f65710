"""A run or study folder's lock held by another live process (for the tests of one process per folder)."""

import contextlib
import subprocess
import sys
from pathlib import Path

HOLD = """
import sys, time
from stdann.runs.lock import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def hold_in_other_process(folder):
    """Yield a subprocess that holds ``folder``'s lock (until the block ends or it is killed)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(Path(folder))], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()  # "" if the helper failed
        assert line.strip() == "held", line
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
