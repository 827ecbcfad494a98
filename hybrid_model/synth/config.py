"""Generator variants: the ranges every random element of a phantom series is drawn from.

``TRAIN`` is what training sees. ``HELDOUT`` is a distinct configuration of the same generator
that training never sees: other head geometry (rounder and smaller heads, thinner skulls,
stronger atrophy), other scanners (sharper kernels, lower dose, thinner slices, larger tilt and
rotation, a different padding value and table) and other mimic frequencies. The physical
specification (HU ranges of tissues and of the five hemorrhage kinds) is the same in both:
that is what a real scanner fixes. Reporting every metric on both, side by side, gives the
generalisation gap (docs/experiments.md).

A range is ``(low, high)`` drawn uniformly; a probability is a float in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Range = tuple[float, float]


@dataclass(frozen=True)
class Variant:
    """Every range the generator draws from (mm, HU, degrees unless said otherwise)."""

    name: str
    # Head geometry: semi-axes of the cranial cavity (lateral a, antero-posterior b, up c).
    cavity_a: Range = (62.0, 74.0)
    cavity_ab_ratio: Range = (1.15, 1.32)
    cavity_c: Range = (62.0, 76.0)
    skull_mm: Range = (4.5, 8.0)
    scalp_mm: Range = (3.0, 7.0)
    skull_table_hu: Range = (1300.0, 1900.0)
    skull_diploe_hu: Range = (450.0, 900.0)
    atrophy: Range = (0.0, 1.0)  # 0: young adult; 1: marked atrophy (sulci, ventricles)
    # Head pose in the scanner.
    yaw_deg: Range = (-12.0, 12.0)
    pitch_deg: Range = (-14.0, 14.0)
    roll_deg: Range = (-6.0, 6.0)
    offset_mm: Range = (-12.0, 12.0)
    # Scanner.
    slice_mm: tuple[float, ...] = (5.0, 5.0, 5.0, 4.0, 2.5)
    spacing_mm: Range = (0.40, 0.60)
    tilt_deg: Range = (0.0, 20.0)
    tilt_probability: float = 0.5
    dose_sigma_hu: Range = (2.5, 7.0)  # quantum noise in central brain of a 5 mm slice
    kernel_cutoff: Range = (0.45, 0.9)  # apodisation cut-off, fraction of Nyquist (soft..sharp)
    kernel_boost: Range = (0.0, 0.6)  # edge enhancement of sharper kernels
    psf_mm: Range = (0.35, 0.8)  # in-plane blur of the reconstruction
    beam_hardening: Range = (0.03, 0.15)  # residual bone beam hardening (streaks, cupping)
    fov_fraction: Range = (0.9, 1.02)  # reconstruction circle diameter / matrix width
    padding_hu: tuple[float, ...] = (-3024.0, -2000.0, -1024.0)
    holder_hu: Range = (150.0, 450.0)
    table_hu: Range = (300.0, 800.0)
    # Mimics: probability per series of each hyperdense normal finding.
    pineal_calcification: float = 0.6
    choroid_calcification: float = 0.6
    basal_ganglia_calcification: float = 0.2
    falx_calcification: float = 0.3
    dense_sinus: float = 0.35  # dural venous sinuses at 55..72 HU (high haematocrit)
    # Lesions: probability that a series has any, and how many (weights for 1, 2, 3).
    lesion_probability: float = 0.7
    lesion_count_weights: tuple[float, ...] = (0.55, 0.3, 0.15)
    kind_weights: tuple[float, ...] = (0.25, 0.22, 0.13, 0.22, 0.18)  # HEMORRHAGE_KINDS order
    extra: dict[str, float] = field(default_factory=dict)


TRAIN = Variant(name="train")

HELDOUT = replace(
    TRAIN,
    name="heldout",
    cavity_a=(58.0, 70.0),  # smaller
    cavity_ab_ratio=(1.05, 1.18),  # rounder (brachycephalic)
    cavity_c=(58.0, 70.0),
    skull_mm=(3.5, 6.0),
    scalp_mm=(2.0, 5.0),
    skull_table_hu=(1200.0, 1700.0),
    atrophy=(0.3, 1.0),
    yaw_deg=(-20.0, 20.0),
    pitch_deg=(-20.0, 20.0),
    roll_deg=(-9.0, 9.0),
    slice_mm=(5.0, 3.0, 2.0),
    spacing_mm=(0.42, 0.58),
    tilt_deg=(10.0, 25.0),
    tilt_probability=0.6,
    dose_sigma_hu=(4.0, 9.0),  # lower dose
    kernel_cutoff=(0.7, 1.0),  # sharper kernels
    kernel_boost=(0.3, 0.9),
    psf_mm=(0.3, 0.6),
    beam_hardening=(0.08, 0.2),
    padding_hu=(-2048.0,),
    holder_hu=(80.0, 250.0),
    table_hu=(200.0, 600.0),
    pineal_calcification=0.75,
    choroid_calcification=0.75,
    basal_ganglia_calcification=0.35,
    falx_calcification=0.45,
    dense_sinus=0.5,
    kind_weights=(0.2, 0.2, 0.2, 0.2, 0.2),
)

VARIANTS = {v.name: v for v in (TRAIN, HELDOUT)}
