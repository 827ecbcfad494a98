"""Hyperdense normal findings: what a hemorrhage model must learn not to call blood.

Drawn per series with the variant's probabilities, at their anatomical places:
* pineal calcification: midline, behind the third ventricle, 2-5 mm, 90-400 HU;
* choroid plexus calcification: in the atria of both lateral ventricles, 3-7 mm, 70-350 HU;
* basal ganglia calcification: punctate, in the globus pallidus, 1-3 mm, 70-300 HU;
* falx calcification: plaques on the falx, 3-10 mm long, 1-2 mm thick, 100-600 HU;
* dense dural venous sinuses (``Head.dense_sinus``, 55-72 HU, drawn by the anatomy): the
  classic false positive, in the same HU range as acute blood.
Skull-base bone and beam-hardening streaks, the other two classic mimics, come from the anatomy
and from the scanner (``hybrid_model.synth.scanner``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hybrid_model.synth.config import Variant

if TYPE_CHECKING:
    from hybrid_model.synth.anatomy import Head, Mimic

MIMIC_KINDS = ("pineal", "choroid_plexus", "basal_ganglia", "falx", "dense_sinus")


def draw_mimics(rng: np.random.Generator, head: Head, variant: Variant) -> list[Mimic]:
    from hybrid_model.synth.anatomy import Mimic

    u = rng.uniform
    s = head.c / 70.0
    b = head.b
    out: list[Mimic] = []
    if rng.random() < variant.pineal_calcification:
        r = u(1.2, 2.6)
        out.append(Mimic("pineal", (0.0, 0.2 * b, 3 * s), (r, r * u(0.8, 1.3), r), u(90, 400)))
    if rng.random() < variant.choroid_calcification:
        for path in head.ventricle_path[0::2]:  # the main path of each side; node 4 = atrium
            cx, cy, cz, rad = path[4]
            r = min(u(1.5, 3.5), 0.7 * rad)
            centre = (float(cx), float(cy + u(-2, 2)), float(cz + u(-2, 2)))
            out.append(Mimic("choroid_plexus", centre, (r, r * u(0.8, 1.5), r), u(70, 350)))
    if rng.random() < variant.basal_ganglia_calcification:
        for side in (-1, 1):
            r = u(0.8, 1.8)
            centre = (side * u(15, 18), -0.02 * b + u(-3, 3), u(-4, 2))
            out.append(Mimic("basal_ganglia", centre, (r, r, r), u(70, 300)))
    if rng.random() < variant.falx_calcification:
        for _ in range(int(rng.integers(1, 4))):
            # On the falx: the curved midline plane, where the fissure runs (in front of and
            # behind the corpus callosum, or above it); see Head._brain.
            y = (
                u(0.36, 0.6) * b * rng.choice([-1.0, 1.0])
                if rng.random() < 0.6
                else u(-0.3, 0.3) * b
            )
            z = u(10, 50) * s if abs(y) >= 0.33 * b else u(30, 50) * s
            x = head.midline(y)
            out.append(Mimic("falx", (x, y, z), (u(0.6, 1.1), u(2, 6), u(1.5, 4)), u(100, 600)))
    return out


def mimic_kinds(head: Head) -> list[str]:
    """The mimics present in a head (for the series metadata)."""
    kinds = sorted({m.kind for m in head.mimics})
    if head.dense_sinus:
        kinds.append("dense_sinus")
    return kinds
