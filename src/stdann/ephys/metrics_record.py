"""The metrics.json record of an analysis: the rules behind its numbers in words, one block's entry
(each network's summary and the trained-vs-untrained verdicts), the whole record with its
measurement version, stimuli, BatchNorm mode and macaque comparison.
"""

from __future__ import annotations

import dataclasses

from stdann import DIRECTION_CONVENTION
from stdann.ephys.macaque import comparison_rows, load_reference
from stdann.ephys.population import CHANCE_LEVEL
from stdann.ephys.recording import bn_mode
from stdann.ephys.registry import HEADLINE_RULE, NETWORKS
from stdann.ephys.analyze import CONSISTENCY_TOLERANCE_DEG, MEASUREMENT_VERSION, check_stimuli
from stdann.ephys.sampling import MIN_PHASES, phase_problem
from stdann.ephys.verdicts import MAP_ORDER_ALPHA, trained_vs_untrained


def block_entry(by_network: dict[str, dict]) -> dict:
    """One block's entry of metrics.json: each network's summary and, with both networks, the
    trained-vs-untrained verdicts."""
    entry = {label: by_network[label] for label in NETWORKS if label in by_network}
    if all(label in by_network for label in NETWORKS):
        entry["trained_vs_untrained"] = trained_vs_untrained(by_network["trained"], by_network["untrained"])
    return entry


def rules(ecfg) -> dict[str, str]:
    """The rules behind the numbers, in words (metrics.json ``rules``)."""
    return {
        "response": "block output after its final ReLU, averaged over frames (and over phases / dot patterns)",
        "responsive": f"peak > {ecfg.responsive_threshold} x 99th percentile of the block's peaks (and > 0), and driven: "
                      f"peak >= {ecfg.driven_ratio:g} x the unit's grey-screen response (n_excluded_undriven; a unit "
                      "whose responses ride on a grey-screen response near its peak has a blank-subtracted curve made "
                      "of the small remainder, which reads as sharp tuning)",
        "direction_selective": f"DSI > {ecfg.dsi_criterion:.4g} (equivalently DI > 0.5); DI >= 0.5 also given",
        "headline": HEADLINE_RULE,
        "phases": f"grating and plaid responses average ephys.n_phases = {ecfg.n_phases} evenly spaced starting phases "
                  f"(at least {MIN_PHASES}: the average over P phases cancels every harmonic of the phase response "
                  "below the P-th in every block, whatever its temporal stride; a block's few time samples do not, "
                  "because the clip's end frames meet zero padding)",
        "aliasing": "a grating condition counts for a block only when the map its stage reads samples it: sf x S_in < "
                    "1/2 and tf x T_in < 1/2 (S_in, T_in = spatial and temporal stride of that map in input pixels and "
                    "frames, read from the network; blocks -> <block> -> <network> -> sampling lists the excluded "
                    "conditions); a unit's best and second-best condition are chosen among the sampled ones",
        "blank": "blank = the unit's response to a mean-grey clip (same BatchNorm state); blank_ratio = blank / peak",
        "dsi_blank": "DSI of the tuning curve minus the blank, clipped at 0 (units that never exceed the blank are "
                     "excluded, n_blank_excluded)",
        "vector_strength_blank": "1 - CV_direction of the blank-subtracted curve: |sum r e^(i theta)| / sum r; 0 for every "
                                 "curve with R(theta) = R(theta + 180 deg), 1 for a response to one direction only",
        "direction_consistency": f"among direction-selective units (blank-subtracted DSI > {ecfg.dsi_criterion:.4g} "
                                 "at their best condition), the fraction whose preferred direction at their best and second-best "
                                 f"sampled condition agree within {CONSISTENCY_TOLERANCE_DEG:g} deg (chance "
                                 f"{CONSISTENCY_TOLERANCE_DEG / 180:.2f}); above chance when its 95% CI lies above "
                                 "(a flat curve's vector sum points the same way at every condition, so units that are "
                                 "not direction selective are left out)",
        "rdk": f"one dot field per repeat ({ecfg.rdk_repeats} repeats, {ecfg.rdk_density:g} dots per px^2, "
               f"{ecfg.rdk_speed:g} px/frame), shared by every direction and coherence; noise dots keep their angle to "
               "the signal direction; trajectories centred on the middle frame and shifted by 0 .. n-1 frames, n = the "
               "block's temporal stride (blocks -> sampling -> dot_offsets), so that the clips of theta + 180 deg are the "
               "time reversals of those of theta at the block's sampled frames",
        "confidence_intervals": "95%, exact: medians by order statistics (binomial, distribution-free), fractions "
                                "by Clopper-Pearson",
        "trained_vs_untrained": "above / below when the two 95% CIs are disjoint, else not distinguishable",
        "untrained_range": "with ephys.untrained_seeds = N >= 2: the untrained networks of seeds 0 .. N-1 of the run's "
                           "configuration (train.seed 0 .. N-1, data.seed + s), each measured as the untrained control "
                           "is; a block is above_range when the trained 95% CI lies above all N values, below_range "
                           "when below all, else inside_range (blocks -> <block> -> range_verdicts; the values in "
                           "untrained_reference)",
        "direction_bias": f"R = |mean e^(i pref)| over responsive units; chance = {CHANCE_LEVEL:.0%} quantile of R when "
                          "each channel's units share one direction drawn uniformly at random (weight sharing: a block "
                          "has as many independent full-field tuning curves as channels), exact (Kluyver's formula)",
        "map": "z = sum K w e^(i theta) / sum K, w = 1 - CV_direction, Gaussian K of FWHM maps.kernel_fwhm_mm = "
               + ("ephys.map_window_mm" if ecfg.map_window_mm > 0 else
                  "max(2 unit spacings, Lambda_fine / 4), Lambda_fine measured on the map smoothed over 2 unit spacings"),
        "analysed_map": "column spacing, pinwheels and density on the smoothed map with its mean vector removed "
                        "(band-pass: a population bias would hide its zeros); map_with_mean: the same on z itself",
        "unit_level_map": "each responsive unit's preferred direction drawn at its cortical position (no smoothing)",
        "mean_removed_map_shown": "when R is above its chance level",
        "pinwheel_density": "n pinwheels x Lambda^2 / analysed area, Lambda = 1 / power-weighted mean spatial frequency "
                            "of the analysed map (measured)",
        "smoothness": "1 - mean|d pref|(pairs closer than the kernel FWHM) / same with positions shuffled; 0 = none",
        "map_order": f"ordered when the permutation p-value of the smoothness (positions shuffled) is < {MAP_ORDER_ALPHA}",
    }


def build_metrics(results: dict[str, dict], ecfg, *, run_dir, checkpoints: dict, stimuli, frames: int, size: int,
                  notes: list[str] | None = None) -> dict:
    """The metrics.json record: ``results`` = {network: {block: (summary, details)}}."""
    blocks = list(next(iter(results.values())))
    notes = list(notes or [])
    if phase_problem(ecfg.n_phases):
        notes.append(phase_problem(ecfg.n_phases))
    metrics = {
        "measurement": MEASUREMENT_VERSION,
        "run_dir": str(run_dir),
        "checkpoints": checkpoints,
        "direction_convention": DIRECTION_CONVENTION,
        "batchnorm": bn_mode(ecfg.bn_calibration_clips),
        "rules": rules(ecfg),
        "clip": {"frames": frames, "size": size},
        "stimuli": list(check_stimuli(stimuli)),
        "ephys_config": dataclasses.asdict(ecfg),
        "blocks": {b: block_entry({label: res[b][0] for label, res in results.items()}) for b in blocks},
        "notes": notes,
    }
    metrics["comparison"] = comparison_rows(metrics["blocks"], load_reference())
    return metrics
