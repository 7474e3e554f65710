"""Hundreds of bad configuration values, for every key: wrong types, out-of-range numbers, NaN and
infinities, nonsense names, through `--set` and through a YAML file. A trial holds when `stdann train`
refuses the value with one line that names the key (before any work), or — for a value that is valid
after all — trains without a traceback."""

from __future__ import annotations

import pytest

from fault_helpers import run_main
from stdann.config import Config, flat_keys

pytestmark = pytest.mark.slow

BY_TYPE = {
    int: ["-1", "-1000000", "1.5", "abc", "[1, 2]", "{a: 1}", "null", ".inf", ".nan", "1e400", "''", "0x"],
    float: ["-1", "-1e30", "abc", ".nan", ".inf", "-.inf", "[1]", "{a: 1}", "null", "''", "1e400"],
    bool: ["maybe", "2", "[true]", "{a: 1}", "null", "-1"],
    str: ["[a, b]", "{a: 1}", "null", "nonsense-value"],
    list: ["{a: 1}", "[[1, 2]]", "[null]", "nonsense-value", "''"],
    dict: ["3", "[1]", "abc", "{layer9.9: {sheet_side: 1}}", "{layer3.1: {sheet_side: -1}}",
           "{layer3.1: {width: 1}}", "{layer3.1: 5}"],
}
# The values that once ended in a traceback.
ISSUE = ["optim.batch_size=0", "train.log_every=0", "train.ckpt_every=0", "moco.queue_size=0", "data.frames=0",
         "optim.epochs=.inf", "data.size=1", "moco.dim=0", "data.pair_max_gap=-1", "data.crop_scale_min=2",
         "train.threads=-1", "data.images=[nosuch]", "model.arch=resnet50", "optim.max_steps=-5",
         "topography.alpha=-0.5", "train.amp=fp16", "train.device=tpu", "topography.loss=mse",
         "model.width=4096", "data.size=100000"]


def _values() -> list[str]:
    defaults = Config()
    out = list(ISSUE)
    for key in flat_keys(defaults):
        obj = defaults
        for part in key.split("."):
            obj = getattr(obj, part)
        kind = type(obj)
        out += [f"{key}={v}" for v in BY_TYPE.get(kind, [])]
    return out



def _judge(row, override: str, rc, err: str, tb: str) -> None:
    key = override.split("=", 1)[0]
    lines = [line for line in err.strip().splitlines() if line.startswith("stdann train: error:")]
    refused = rc == 2 and len(lines) == 1 and key.split(".")[-1] in lines[0]
    row.trial(not tb and (refused or rc == 0), f"{override}: exit {rc}, {tb or err.strip()[-250:]}")


def test_bad_values_through_set(tmp_path, ledger):
    row = ledger("bad configuration values through --set, for every key (`stdann train`)")
    values = _values()
    for i, override in enumerate(values):
        out = tmp_path / f"r{i}"
        rc, err, tb = run_main(["train", "--preset", "smoke", "--out", str(out), "--steps", "1", "--no-progress",
                              "--set", "train.eval_pairs=0", "--set", "topography.n_windows=300", "--set", override])
        _judge(row, override, rc, err, tb)
    row.note = f"{sum(1 for f in row.failures)} failed of {len(values)}"
    row.check(200)


def test_bad_values_through_a_yaml_file(tmp_path, ledger):
    row = ledger("bad configuration values in a --config YAML file, for every key (`stdann train`)")
    for i, override in enumerate(_values()):
        key, value = override.split("=", 1)
        section, name = key.split(".", 1)
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(f"{section}:\n  {name}: {value}\ntrain: {{eval_pairs: 0}}\ntopography: {{n_windows: 300}}\n"
                       if section not in ("train", "topography") else f"{section}:\n  {name}: {value}\n")
        rc, err, tb = run_main(["train", "--preset", "smoke", "--config", str(cfg), "--out", str(tmp_path / f"r{i}"),
                              "--steps", "1", "--no-progress"])
        _judge(row, override, rc, err, tb)
    row.check(200)
