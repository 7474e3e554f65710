"""Write tests/fixtures/torchvision_r3d18_golden.json: torchvision's r3d_18 state-dict layout and its
logits for deterministic weights and input, so the tests can check stdann's backbone against
torchvision without depending on it.

Usage (needs the torchvision wheel unpacked somewhere, e.g. `pip download --no-deps torchvision`):
    TORCHVISION_DIR=/tmp/tvsite/torchvision .venv/bin/python scripts/make_torchvision_golden.py
TORCHVISION_DIR lets this run where torchvision's compiled ops do not match the installed torch
(only the pure-Python model code is used).
"""

import json
import os
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from golden_weights import deterministic_input, fill_deterministic  # noqa: E402

tv_dir = os.environ.get("TORCHVISION_DIR")
if tv_dir:
    pkg = types.ModuleType("torchvision")
    pkg.__path__ = [tv_dir]
    sys.modules["torchvision"] = pkg
from torchvision.models.video import r3d_18  # noqa: E402

model = r3d_18(weights=None)
fill_deterministic(model)
model.eval()
with torch.no_grad():
    logits = model(deterministic_input())
out = {
    "source": "torchvision.models.video.r3d_18 (torchvision 0.28.0), weights from tests/golden_weights.py",
    "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
    "logits": logits.tolist(),
}
path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "torchvision_r3d18_golden.json"
path.write_text(json.dumps(out))
print(f"wrote {path}")
