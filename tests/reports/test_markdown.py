"""Markdown tables of a study: the seeds' agreement on each stored verdict."""

from stdann.ephys.registry import DIRECTION_HEADLINE
from stdann.reports.markdown import seed_agreement, study_markdown


def _cond(name, seed, head, dsi):
    tvu = {DIRECTION_HEADLINE: {"verdict": head}, "dsi_median": {"verdict": dsi}}
    return {"name": name, "label": name, "seed": seed,
            "metrics": {"layer3.1": {"trained": {}, "untrained": {}, "trained_vs_untrained": tvu}}}


def test_seed_agreement_reads_each_seeds_stored_verdicts():
    study = {"blocks": ["layer3.1"], "conditions": [
        _cond("alpha_0", 0, "above", "below"), _cond("alpha_0", 1, "below", "below"),
        _cond("lever", 1, "above", "above"), _cond("lever", 0, "above", "above"),
        _cond("once", 0, "above", "above")]}
    rows = {r["condition"]: r for r in seed_agreement(study, "layer3.1")}
    assert set(rows) == {"alpha_0", "lever"}  # a condition with one seed has nothing to agree on
    assert rows["alpha_0"]["headline"] == ["above", "below"] and rows["alpha_0"]["agreement"] == "mixed"
    assert rows["lever"]["seeds"] == [0, 1] and rows["lever"]["agreement"] == "agree"
    text = study_markdown(study)
    assert "do the seeds agree?" in text and "| alpha_0 | 0, 1 | above / below | below / below | mixed |" in text
    assert "do the seeds agree?" not in study_markdown({"blocks": ["layer3.1"], "conditions": study["conditions"][-1:]})
