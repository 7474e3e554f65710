"""stdann without PyAV (the GPU machines have none): importing every module, training, benchmarking
and analysing on the built-in generated video work; ``av`` is imported only where video files are
read. PyAV is hidden from a fresh interpreter by a meta-path finder that refuses it."""

import pytest
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import importlib, pkgutil, sys

    class NoAV:
        def find_spec(self, name, path=None, target=None):
            if name == "av" or name.startswith("av."):
                raise ModuleNotFoundError("No module named 'av' (hidden by the test)", name="av")
            return None

    sys.meta_path.insert(0, NoAV())
    import stdann
    for m in pkgutil.walk_packages(stdann.__path__, "stdann."):
        importlib.import_module(m.name)
    from stdann.cli.main import main

    out = sys.argv[1]
    assert main(["train", "--preset", "smoke", "--steps", "2", "--out", out, "--no-progress",
                 "--set", "train.threads=1", "--set", "train.eval_pairs=8"]) == 0
    assert main(["bench", "train", "--preset", "smoke", "--steps", "1", "--warmup", "0", "--device", "cpu",
                 "--no-ablation", "--json", "--set", "train.threads=1"]) == 0
    assert main(["analyze", out, "--blocks", "layer4.1", "--no-figures", "--no-progress", "--device", "cpu",
                 "--set", "ephys.n_directions=8"]) == 0
    assert "av" not in sys.modules
    print("WITHOUT-PYAV-OK")
''')


@pytest.mark.heavy
def test_train_bench_and_analyze_without_pyav(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and "WITHOUT-PYAV-OK" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
