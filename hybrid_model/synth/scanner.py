"""CT as a scanner makes it: projection, quantum noise, beam hardening, filtered back-projection.

Filtered back-projection is linear, so a reconstruction is the object seen through the system's
point-spread function plus the FBP of everything that corrupts the projections. This module
does exactly that, on a grid of half the matrix (the errors are smooth at that scale) with
parallel-beam geometry:
1. forward-project the attenuation (mu = mu_water (1 + HU/1000)) and, separately, the bone's
   excess attenuation, over ``views`` angles (image rotation + column sums, OpenCV);
2. corrupt the line integrals: Poisson (quantum) noise of variance exp(p) / I0, so rays through
   dense skull-base bone are noisier (the streaks of photon starvation), and residual bone beam
   hardening, -beta x p_bone^2 (dark bands between dense bones, cupping under the skull);
3. filter with a ramp times the reconstruction kernel's apodisation (a Hann window cut at a
   randomised fraction of Nyquist, with an edge-enhancing boost for sharper kernels): the noise
   of the image is therefore correlated, with the ramp-times-window power spectrum of real CT
   (low at zero frequency, a peak at mid frequencies), not white;
4. back-project and add to the object blurred by the kernel's PSF (with the overshoot of sharp
   kernels at the skull), so partial volume at the inner table is the scanner's, not a resize's;
5. outside the reconstruction circle (the scan field of view) the pixels hold the padding value
   (-3024, -2048 or -1024 HU: what scanners write there).
The dose sets I0 so that the quantum noise in the central brain of a 5 mm slice has the drawn
standard deviation (thinner slices are noisier by sqrt(5 / thickness)).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hybrid_model.synth.config import Variant
from hybrid_model.synth.fields import F32

MU_WATER = 0.019  # 1/mm, about 70 keV


@dataclass
class Scanner:
    sigma_hu: float
    cutoff: float
    boost: float
    psf_mm: float
    beam_hardening: float
    fov_fraction: float
    padding_hu: float
    kernel: str
    views: int = 120

    @classmethod
    def draw(cls, rng: np.random.Generator, variant: Variant) -> Scanner:
        u = rng.uniform
        cutoff = u(*variant.kernel_cutoff)
        boost = u(*variant.kernel_boost)
        sharp = cutoff + 0.5 * boost
        kernel = "SOFT" if sharp < 0.65 else "STANDARD" if sharp < 0.95 else "SHARP"
        return cls(
            sigma_hu=u(*variant.dose_sigma_hu),
            cutoff=cutoff,
            boost=boost,
            psf_mm=u(*variant.psf_mm),
            beam_hardening=u(*variant.beam_hardening),
            fov_fraction=u(*variant.fov_fraction),
            padding_hu=float(rng.choice(variant.padding_hu)),
            kernel=kernel,
        )

    def filter(self, n: int) -> np.ndarray:
        """The ramp x apodisation filter for ``2n`` padded detector samples (rfft layout).

        The ramp is the transform of the sampled Ram-Lak kernel (h[0] = 1/4, h[odd k] =
        -1/(pi k)^2), whose non-zero response at zero frequency keeps the reconstruction free
        of the offset a sampled |f| would give.
        """
        k = np.arange(2 * n)
        k = np.where(k > n, k - 2 * n, k)  # circular: 0..n, -(n-1)..-1
        h = np.zeros(2 * n)
        h[0] = 0.25
        odd = k % 2 == 1
        h[odd] = -1.0 / (np.pi * k[odd]) ** 2
        ramp = np.abs(np.fft.rfft(h))
        f = np.fft.rfftfreq(2 * n)  # cycles per sample, 0..0.5
        fc = 0.5 * self.cutoff
        window = np.where(f < fc, 0.5 * (1 + np.cos(np.pi * f / fc)), 0.0)
        return (ramp * window * (1 + self.boost * (f / fc) ** 2)).astype(F32)

    def acquire(
        self, hu: np.ndarray, spacing: float, slice_mm: float, rng: np.random.Generator
    ) -> np.ndarray:
        """The reconstructed slice (HU, float32) of the object ``hu`` (HU, float32, square)."""
        size = hu.shape[0]
        n = int(np.clip(size // 2, 32, 256))  # noise grid: about 1 mm pixels on a head FOV
        m = max(n // 2, 32)  # attenuation grid: line integrals are smooth
        mu = np.maximum(MU_WATER * (1 + hu / 1000.0), 0).astype(F32)
        excess = (MU_WATER * np.maximum(hu - 150.0, 0) / 1000.0).astype(F32)
        small = cv2.resize(np.dstack([mu, excess]), (m, m), interpolation=cv2.INTER_AREA)
        coarse_views = max(self.views // 2, 30)
        p, p_bone = self._project(small, spacing * size / m, coarse_views)
        # Quantum noise on the fine grid: the variance follows exp(p), interpolated.
        variance = cv2.resize(
            np.exp(p).astype(F32), (n, self.views), interpolation=cv2.INTER_LINEAR
        )
        unit = rng.standard_normal((self.views, n)).astype(F32) * np.sqrt(variance)
        noise = self._backproject(self._filtered(unit, n), spacing * size / n)
        hardening = (-self.beam_hardening * p_bone**2).astype(F32)
        hard = self._backproject(self._filtered(hardening, m), spacing * size / m)
        to_hu = F32(1000.0 / MU_WATER)
        noise, hard = noise * to_hu, hard * to_hu
        # Dose: scale the unit-I0 noise so the central brain has the drawn sigma.
        c0, c1 = int(n * 0.42), int(n * 0.58)
        central = float(noise[c0:c1, c0:c1].std()) or 1.0
        sigma = self.sigma_hu * np.sqrt(5.0 / slice_mm)
        noise *= F32(sigma / central)
        errors_hu = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) + cv2.resize(
            hard, (size, size), interpolation=cv2.INTER_LINEAR
        )
        psf = max(self.psf_mm / spacing, 0.3)
        blurred = cv2.GaussianBlur(hu, (0, 0), psf)
        if self.boost > 0:  # edge enhancement of sharper kernels: overshoot at the skull
            wide = cv2.GaussianBlur(hu, (0, 0), 2.5 * psf)
            blurred = blurred + F32(0.35 * self.boost) * (blurred - wide)
        out = (blurred + errors_hu).astype(F32)
        return self.field_of_view(out)

    @staticmethod
    def _angles(views: int) -> np.ndarray:
        return np.linspace(0, 180, views, endpoint=False)

    def _project(self, image: np.ndarray, pixel: float, views: int) -> tuple[np.ndarray, ...]:
        """Parallel-beam line integrals (views x detectors) of each channel of ``image``."""
        if image.ndim == 2:
            image = image[:, :, None]
        n = image.shape[0]
        centre = ((n - 1) / 2.0, (n - 1) / 2.0)
        sino = np.empty((views, n, image.shape[2]), F32)
        for i, angle in enumerate(self._angles(views)):
            rot = cv2.getRotationMatrix2D(centre, float(angle), 1.0)
            rotated = cv2.warpAffine(image, rot, (n, n), flags=cv2.INTER_LINEAR)
            sino[i] = rotated.reshape(n, n, -1).sum(axis=0)
        sino *= F32(pixel)
        return tuple(sino[..., c] for c in range(image.shape[2]))

    def _filtered(self, sino: np.ndarray, n: int) -> np.ndarray:
        spectrum = np.fft.rfft(sino, n=2 * n, axis=1) * self.filter(n)[None, :]
        return np.fft.irfft(spectrum, n=2 * n, axis=1)[:, :n].astype(F32)

    def _backproject(self, filtered: np.ndarray, pixel: float) -> np.ndarray:
        views, n = filtered.shape
        centre = ((n - 1) / 2.0, (n - 1) / 2.0)
        image = np.zeros((n, n), F32)
        for i, angle in enumerate(self._angles(views)):
            smear = np.ascontiguousarray(np.broadcast_to(filtered[i][None], (n, n)))
            rot = cv2.getRotationMatrix2D(centre, -float(angle), 1.0)
            image += cv2.warpAffine(smear, rot, (n, n), flags=cv2.INTER_LINEAR)
        return image * F32(np.pi / views / pixel)

    def field_of_view(self, hu: np.ndarray) -> np.ndarray:
        """Pixels outside the reconstruction circle hold the padding value."""
        size = hu.shape[0]
        yy, xx = np.ogrid[:size, :size]
        c = (size - 1) / 2.0
        outside = (yy - c) ** 2 + (xx - c) ** 2 > (self.fov_fraction * size / 2.0) ** 2
        hu[outside] = F32(self.padding_hu)
        return hu
