"""A 3-D head in Hounsfield units, cut by any plane: from the skull base to the vertex.

``Head`` is drawn once per series (``Head.draw``); ``Head.section(x, y, z)`` paints the tissue
at head coordinates (mm; X patient left, Y posterior, Z up; the origin at the centre of the
cranial cavity at its widest level) and returns HU, a tissue map and the fields lesions need.
Everything is an implicit 3-D shape, so neighbouring slices, a tilted gantry and a rotated
head all cut the same anatomy.

What is there, bottom to top (each level's structures appear only where the plane cuts them):
* below the skull base: neck muscles, the dens, the face: maxillary sinuses, nasal cavity with
  septum and turbinates, nasopharynx, orbits (fat, globe with lens, bony walls), ethmoid cells,
  zygomatic arches and mandibular condyles, mastoid air cells;
* the skull base: a floor in three steps (anterior, middle and posterior fossae) with the
  sphenoid body and sinus, the clivus, the dense petrous ridges between middle and posterior
  fossa, the foramen magnum with the medulla passing through it;
* posterior fossa: cerebellum with folia, fourth ventricle, brainstem and its cisterns, the
  tentorium, transverse and sigmoid sinuses;
* cerebrum: cortex following 3-D sulci, white matter, Sylvian and interhemispheric fissures with
  the falx, lateral ventricles (frontal, temporal and occipital horns, atria), third ventricle,
  caudate, lentiform nuclei and thalami, superior sagittal and straight sinuses; a CSF rim under
  the inner table; atrophy widens sulci, fissures, rim and ventricles;
* the vault: outer table, diploe, inner table, thicker at the occiput, thinner at the temporal
  squama, frontal sinus; scalp over it; the vertex.
Hyperdense normal findings ("mimics", ``hybrid_model.synth.mimics``) are drawn here too:
calcified pineal, choroid plexus, basal ganglia and falx, dense venous sinuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hybrid_model.synth.config import Variant
from hybrid_model.synth.fields import F32, Field3D, ellipsoid, smoothstep, tube

# Tissue codes of ``Section.tissue`` (tests check each code's HU range).
AIR, SOFT, FAT, BONE, GREY, WHITE, CSF, SINUS_AIR = 0, 1, 2, 3, 4, 5, 6, 7
GLOBE, VENOUS, CALCIFICATION, FALX, LESION, HOLDER, TABLE, PAD = 8, 9, 10, 11, 12, 13, 14, 15
VENTRICLE, DEEP_GREY, LENS = 16, 17, 18
TISSUES = {
    AIR: "air", SOFT: "soft tissue", FAT: "fat", BONE: "bone", GREY: "grey matter",
    WHITE: "white matter", CSF: "CSF", SINUS_AIR: "air in sinus", GLOBE: "globe",
    VENOUS: "venous sinus", CALCIFICATION: "calcification", FALX: "falx", LESION: "hemorrhage",
    HOLDER: "head holder", TABLE: "table", PAD: "pad", VENTRICLE: "ventricular CSF",
    DEEP_GREY: "deep grey matter", LENS: "lens",
}  # fmt: skip
AIR_HU = -1000.0


@dataclass
class Section:
    """One cut: HU and tissue per pixel plus the fields lesions are placed with."""

    hu: np.ndarray  # float32
    tissue: np.ndarray  # uint8 codes above
    depth: np.ndarray  # mm below the inner table (> 0 inside the cranial cavity)
    brain: np.ndarray  # bool: parenchyma (cerebrum, cerebellum, brainstem)
    sulcal_csf: np.ndarray  # bool: sulci, fissures, cisterns, rim (where SAH collects)
    ventricles: np.ndarray  # bool
    grey_hu: float = 0.0


@dataclass
class Mimic:
    """A hyperdense normal finding: an ellipsoid of ``hu`` (drawn inside tissue ``within``)."""

    kind: str
    centre: tuple[float, float, float]
    axes: tuple[float, float, float]
    hu: float


@dataclass
class Head:
    """The parameters of one head (drawn by ``Head.draw``)."""

    a: float
    b: float
    c: float
    c_low: float
    z_ant: float
    z_mid: float
    z_post: float
    skull: float
    scalp: float
    table_hu: float
    diploe_hu: float
    atrophy: float
    grey: float
    white: float
    csf: float
    soft: float
    venous_hu: float
    dense_sinus: bool
    fields: dict[str, Field3D] = field(default_factory=dict)
    geometry: dict[str, float] = field(default_factory=dict)
    ventricle_path: list[np.ndarray] = field(default_factory=list)
    mimics: list[Mimic] = field(default_factory=list)

    @classmethod
    def draw(cls, rng: np.random.Generator, variant: Variant) -> Head:
        u = rng.uniform
        a = u(*variant.cavity_a)
        b = a * u(*variant.cavity_ab_ratio)
        c = u(*variant.cavity_c)
        s = c / 70.0
        atrophy = u(*variant.atrophy)
        dense = bool(rng.random() < variant.dense_sinus)
        head = cls(
            a=a,
            b=b,
            c=c,
            c_low=u(78, 90) * s,
            z_ant=-u(18, 25) * s,
            z_mid=-u(38, 45) * s,
            z_post=-u(56, 63) * s,
            skull=u(*variant.skull_mm),
            scalp=u(*variant.scalp_mm),
            table_hu=u(*variant.skull_table_hu),
            diploe_hu=u(*variant.skull_diploe_hu),
            atrophy=atrophy,
            grey=u(34, 44),
            white=u(22, 30),
            csf=u(2, 12),
            soft=u(30, 55),
            venous_hu=u(55, 72) if dense else u(38, 50),
            dense_sinus=dense,
        )
        head.fields = {
            "wobble": Field3D(rng, 90, 6),
            "sulci": Field3D(rng, 26, 10),
            "texture": Field3D(rng, 9, 8),
            "folia": Field3D(rng, 4.5, 6),
            "cells": Field3D(rng, 5, 8),
            "fat": Field3D(rng, 14, 6),
        }
        g = head.geometry
        g["y1"] = -u(0.30, 0.40) * b  # anterior / middle fossa boundary at the midline
        g["y2"] = -u(0.0, 0.08) * b  # petrous apex (middle / posterior fossa) near the midline
        g["petrous_slope"] = u(0.35, 0.55)
        g["y_fm"] = u(0.28, 0.36) * b  # foramen magnum centre
        g["tent"] = head.z_post + u(22, 30) * s
        g["sulcal_depth"] = u(11, 17)
        g["ribbon"] = u(2.4, 3.4)
        g["rim"] = 0.4 + 2.6 * atrophy + u(0, 0.5)
        g["sulcus_width"] = (0.07 + 0.12 * atrophy) * u(0.85, 1.15)
        g["fissure"] = 0.8 + 2.5 * atrophy
        g["third"] = 1.0 + 2.8 * atrophy
        g["xmid_amp"] = u(-2.5, 2.5)
        vent = 1.0 + 0.9 * atrophy
        jitter = 1 + rng.uniform(-0.12, 0.12, (8, 3))
        for side in (-1.0, 1.0):
            pts = (
                np.array(
                    [
                        (side * 5, -0.30 * b, 12 * s),  # frontal horn tip
                        (side * 7, -0.18 * b, 18 * s),
                        (side * 9, 0.02 * b, 22 * s),  # body
                        (side * 12, 0.20 * b, 19 * s),
                        (side * 17, 0.32 * b, 8 * s),  # atrium (trigone)
                        (side * 15, 0.50 * b, 4 * s),  # occipital horn
                    ]
                )
                * jitter[:6]
            )
            radii = np.array([2.6, 3.6, 3.6, 4.2, 6.0, 2.4]) * vent
            temporal = np.array(
                [pts[4], (side * 27, 0.12 * b, -12 * s), (side * 29, -0.08 * b, -22 * s)]
            ) * np.vstack([np.ones(3), jitter[6], jitter[7]])
            head.ventricle_path += [np.concatenate([pts, radii[:, None]], 1)]
            head.ventricle_path += [
                np.concatenate([temporal, (np.array([3.5, 2.4, 1.8]) * vent)[:, None]], 1)
            ]
        from hybrid_model.synth.mimics import draw_mimics

        head.mimics = draw_mimics(rng, head, variant)
        return head

    def midline(self, y):
        """X of the (slightly curved) midline plane of the falx at antero-posterior ``y``."""
        return F32(self.geometry["xmid_amp"]) * np.sin(np.asarray(y, F32) / F32(45.0))

    # --- the skull base -----------------------------------------------------------------
    def petrous_y(self, x: np.ndarray) -> np.ndarray:
        """Y of the petrous ridge (middle / posterior fossa boundary) at lateral position x."""
        g = self.geometry
        return F32(g["y2"]) + np.maximum(np.abs(x) - 12, 0) * F32(g["petrous_slope"])

    def sphenoid_y(self, x: np.ndarray) -> np.ndarray:
        return F32(self.geometry["y1"]) + 0.22 * np.abs(x)

    def floor(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Z of the floor of the cranial cavity (anterior, middle, posterior fossa)."""
        w1 = smoothstep(y - self.sphenoid_y(x), 3.0)
        w2 = smoothstep(y - self.petrous_y(x), 3.0)
        ant = F32(self.z_ant) + 0.004 * x * x - 5 * smoothstep(7 - np.abs(x), 1.5)
        # The middle fossa is deepest laterally (temporal poles); the sella rises in the midline.
        mid = F32(self.z_mid + 6) - 10 * smoothstep(np.abs(x) - 30, 8)
        mid = mid + 12 * smoothstep(13 - np.abs(x), 2.5) * (1 - w2)
        post = F32(self.z_post) + 0.003 * x * x
        zf = ant * (1 - w1) + w1 * (mid * (1 - w2) + post * w2)
        return zf.astype(F32)

    # --- the cut ------------------------------------------------------------------------
    def section(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Section:
        a, b = F32(self.a), F32(self.b)
        g = self.geometry
        s = self.c / 70.0
        fl = self.fields
        cz = np.where(z >= 0, F32(self.c), F32(self.c_low))
        wob = 1 + 0.02 * fl["wobble"](x, y, z)
        r = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / cz) ** 2) / wob
        grad = np.sqrt((x / (a * a)) ** 2 + (y / (b * b)) ** 2 + (z / (cz * cz)) ** 2)
        d_vault = (1 - r) * np.maximum(r, 1e-3) / np.maximum(grad, 1e-4)
        zf = self.floor(x, y)
        d_floor = z - zf
        fm = ((x / 15) ** 2 + ((y - F32(g["y_fm"])) / 18) ** 2 < 1) & (z < zf + 12)
        d_floor = np.where(fm, F32(40.0), d_floor)  # the canal continues down
        depth = np.minimum(d_vault, d_floor)

        occipital = smoothstep(y - 0.55 * b, 6)
        temporal = (
            smoothstep(np.abs(x) - 0.8 * a, 4)
            * smoothstep(z - F32(self.z_mid), 4)
            * (1 - smoothstep(z - F32(self.z_mid + 40 * s), 4))
        )
        frontal_sinus = ellipsoid(x, y, z, (0, -(self.b + 3), self.z_ant + 14 * s), (17, 9, 13))
        t_skull = F32(self.skull) * (1 + 0.35 * occipital - 0.45 * temporal)
        t_skull = t_skull + 9 * np.clip(1.2 - frontal_sinus, 0, 1)  # the frontal bone thickens
        w1 = smoothstep(y - self.sphenoid_y(x), 3.0)
        t_base = (2.5 + 5.5 * w1).astype(F32)  # orbital roofs thin, middle/posterior thicker
        t_base = t_base + 18.0 * smoothstep(13 - np.abs(x), 2.5) * w1 * (
            1 - smoothstep(y - self.petrous_y(x), 3)
        )  # the sphenoid body

        hu = np.full(x.shape, AIR_HU, F32)
        tissue = np.zeros(x.shape, np.uint8)

        # --- envelope: scalp over the vault; face and neck below the anterior floor -------
        vault_env = d_vault > -(t_skull + F32(self.scalp))
        zr = z - F32(self.z_ant)
        front = -(b + 14) - 6 * smoothstep(-(zr + 10), 8)
        back = 0.95 * b
        face_ax = a * (0.95 - 0.12 * smoothstep(-(zr + 45), 8))
        face_c = (front + back) / 2
        face_b = (back - front) / 2
        face_env = ((x / face_ax) ** 2 + ((y - face_c) / face_b) ** 2 < 1) & (zr < 4)
        nose = (
            (np.abs(x) < 11 + 0.2 * zr)
            & (y > front - 28 + 0.5 * np.abs(x) * 2)
            & (y < front + 5)
            & (zr < -8)
            & (zr > -55)
        )
        env = vault_env | ((face_env | nose) & (z > F32(self.z_post - 45 * s)))
        hu[env] = F32(self.soft)
        tissue[env] = SOFT

        below = env & (d_floor < -t_base) & ~(depth > 0)
        if below.any():
            hu_b, tissue_b = hu[below], tissue[below]
            self._lower(x[below], y[below], z[below], hu_b, tissue_b)
            hu[below], tissue[below] = hu_b, tissue_b

        # --- bone: vault and base -------------------------------------------------------
        vault_bone = (d_vault < 0) & (d_vault > -t_skull) & (d_floor > -t_base)
        base_bone = (d_vault > -t_skull) & (d_floor < 0) & (d_floor >= -t_base) & ~fm
        clivus = (
            (np.abs(x) < 11)
            & (y > self.sphenoid_y(x) + 0.12 * b)
            & (y < F32(g["y_fm"]) - 17)
            & (z < F32(self.z_mid + 6))
            & (z > F32(self.z_post - 14))
        )
        petrous_w = 5.5 * np.clip((F32(self.z_mid + 9 * s) - z) / 10, 0, 1)
        petrous = (
            (np.abs(y - self.petrous_y(x)) < petrous_w)
            & (np.abs(x) > 13)
            & (np.abs(x) < 0.88 * a)
            & (z > F32(self.z_post))
            & (z < F32(self.z_mid + 9 * s))
        )
        bone = (vault_bone | base_bone | clivus) & env
        hard = bone | petrous
        xb, yb, zb = x[hard], y[hard], z[hard]
        tex = fl["texture"](xb, yb, zb)
        cells = fl["cells"](xb, yb, zb)
        frac = np.clip(-d_vault[hard] / np.maximum(t_skull[hard], 1e-3), 0, 1)
        skull_hu = (
            F32(self.diploe_hu) + F32(self.table_hu - self.diploe_hu) * np.abs(2 * frac - 1) ** 0.7
        )
        skull_hu = np.where(vault_bone[hard], skull_hu, F32(0.5 * (self.table_hu + self.diploe_hu)))
        hu_h = skull_hu + 60 * tex
        hu_h = np.where(petrous[hard], F32(self.table_hu + 250) + 80 * tex, hu_h)
        # Air in bone: frontal sinus, sphenoid sinus, mastoid cells.
        sphenoid_sinus = ellipsoid(
            xb, yb, zb, (0, g["y1"] + 0.12 * self.b, self.z_mid - 2 * s), (13, 11, 10)
        )
        air = (bone[hard] & (sphenoid_sinus < 1)) | (
            bone[hard] & (frontal_sinus[hard] < 1) & (cells > -0.6)
        )
        for side in (-1, 1):
            mastoid = ellipsoid(
                xb, yb, zb, (side * 0.8 * self.a, 0.22 * self.b, self.z_mid - 8 * s), (11, 14, 15)
            )
            air |= (mastoid < 1) & (cells > 0.15)
        hu_h = np.where(air, F32(-950) + 40 * tex, hu_h)
        hu[hard] = hu_h
        tissue[hard] = np.where(air, SINUS_AIR, BONE)

        # --- the cranial cavity ---------------------------------------------------------
        cavity = (depth > 0) & ~hard
        hu_c, tissue_c = hu[cavity], tissue[cavity]
        self._brain(x[cavity], y[cavity], z[cavity], depth[cavity], hu_c, tissue_c)
        self._mimics(x[cavity], y[cavity], z[cavity], hu_c, tissue_c)
        hu[cavity], tissue[cavity] = hu_c, tissue_c
        brain = cavity & np.isin(tissue, (GREY, WHITE, DEEP_GREY))
        sulcal = cavity & (tissue == CSF)
        ventricles = cavity & (tissue == VENTRICLE)
        return Section(hu, tissue, depth, brain, sulcal, ventricles, self.grey)

    def _lower(self, x, y, z, hu, tissue) -> None:
        """Face, orbits, sinuses and neck: everything inside the skin below the cranial floor
        (arguments: those points only; ``hu`` and ``tissue`` are painted in place)."""
        below = np.ones(x.shape, bool)
        s = self.c / 70.0
        a, b = self.a, self.b
        fat = self.fields["fat"](x, y, z) > 1.5
        hu[fat] = -95
        tissue[fat] = FAT
        cells = self.fields["cells"](x, y, z)
        za = self.z_ant
        for side in (-1, 1):
            orbit = ellipsoid(x, y, z, (side * 29, -b + 10, za - 17 * s), (16, 22, 16))
            wall = below & (orbit >= 1) & (orbit < 1.13)
            hu[wall] = 700
            tissue[wall] = BONE
            inside = below & (orbit < 1)
            hu[inside] = -90
            tissue[inside] = FAT
            globe = ellipsoid(x, y, z, (side * 31, -b - 4, za - 17 * s), (11.5, 11.5, 11.5))
            g_in = below & (globe < 1)
            hu[g_in] = np.where(globe[g_in] > 0.93, F32(40), F32(10))
            tissue[g_in] = GLOBE
            lens = below & (ellipsoid(x, y, z, (side * 31, -b - 14, za - 17 * s), (4, 2, 4)) < 1)
            hu[lens] = 90
            tissue[lens] = LENS
            maxillary = ellipsoid(x, y, z, (side * 24, -b + 16, za - 50 * s), (14, 18, 18))
            m_wall = below & (maxillary >= 1) & (maxillary < 1.1)
            hu[m_wall] = 500
            tissue[m_wall] = BONE
            m_in = below & (maxillary < 1)
            hu[m_in] = -980
            tissue[m_in] = SINUS_AIR
            condyle = below & (
                ellipsoid(x, y, z, (side * 0.84 * a, -0.06 * b, self.z_mid - 16 * s), (6, 8, 11))
                < 1
            )
            zygoma = (
                below
                & (np.abs(np.abs(x) - 0.93 * a) < 3.5)
                & (y > -0.75 * b)
                & (y < 0.0)
                & (np.abs(z - (self.z_mid - 9 * s)) < 3.0)
            )
            hu[condyle | zygoma] = 900
            tissue[condyle | zygoma] = BONE
        ethmoid = below & (np.abs(x) < 11) & (y > -b - 8) & (y < -b + 32) & (z > za - 30 * s)
        e_air = ethmoid & (cells > -0.2)
        hu[ethmoid] = 450
        tissue[ethmoid] = BONE
        hu[e_air] = -940
        tissue[e_air] = SINUS_AIR
        nasal = below & (np.abs(x) < 12) & (y < -b + 48) & (z <= za - 30 * s)
        hu[nasal] = -960
        tissue[nasal] = SINUS_AIR
        turbinate = nasal & (cells > 0.5) & (np.abs(x) > 3)
        hu[turbinate] = 40
        tissue[turbinate] = SOFT
        septum = nasal & (np.abs(x) < 1.2)
        hu[septum] = 300
        tissue[septum] = BONE
        pharynx = below & (ellipsoid(x, y, z, (0, -0.1 * b, self.z_mid - 38 * s), (12, 9, 14)) < 1)
        hu[pharynx] = -970
        tissue[pharynx] = SINUS_AIR
        dens = below & (
            ellipsoid(x, y, z, (0, self.geometry["y_fm"] - 17, self.z_post - 16 * s), (5, 5, 10))
            < 1
        )
        hu[dens] = 800
        tissue[dens] = BONE

    def _brain(self, x, y, z, depth, hu, tissue) -> None:
        """Parenchyma, CSF spaces, deep nuclei, ventricles and venous sinuses (arguments: the
        points of the cranial cavity only; ``hu`` and ``tissue`` are painted in place)."""
        cavity = np.ones(x.shape, bool)
        tex = self.fields["texture"](x, y, z)
        g = self.geometry
        s = self.c / 70.0
        a, b = self.a, self.b
        grey, white, csf = F32(self.grey), F32(self.white), F32(self.csf)
        sulci = self.fields["sulci"](x, y, z)
        width = F32(g["sulcus_width"])
        sd = F32(g["sulcal_depth"])
        cortex = (depth < F32(g["ribbon"])) | ((np.abs(sulci) < width + 0.42) & (depth < sd + 2.5))
        par = np.where(cortex, grey, white) + 1.2 * tex
        hu[cavity] = par[cavity]
        tissue[cavity] = np.where(cortex[cavity], GREY, WHITE)

        petrous_y = self.petrous_y(x)
        tent = F32(g["tent"]) + 14 * s * np.exp(-((x / 26) ** 2))
        posterior = (y > petrous_y) & (z < tent)
        # Brainstem, a column through the foramen magnum up to the midbrain.
        y_bs = float(self.geometry["y2"]) + 13
        stem_path = np.array(
            [
                (0, g["y_fm"] - 2, self.z_post - 30 * s),
                (0, y_bs + 3, self.z_post + 10 * s),
                (0, y_bs, self.z_mid + 8 * s),
                (0, y_bs + 4, self.z_mid + 30 * s),
            ]
        )
        stem_r = np.array([10.0, 12.0, 13.0, 10.5])
        stem = cavity & tube(x, y, z, stem_path, stem_r)
        cistern = cavity & tube(x, y, z, stem_path, stem_r + 2.5 + 2 * self.atrophy) & ~stem
        cerebellum = cavity & posterior & ~stem & ~cistern
        hu[cerebellum] = (
            grey - 3 + 4 * self.fields["folia"](x[cerebellum], y[cerebellum], z[cerebellum])
        )
        tissue[cerebellum] = GREY
        hu[stem] = white + 4
        tissue[stem] = WHITE
        suprasellar = cavity & (
            ellipsoid(x, y, z, (0, y_bs - 18, self.z_mid + 17 * s), (12, 9, 5 + 2 * self.atrophy))
            < 1
        )
        cerebrum = cavity & ~posterior & ~stem

        # CSF: rim under the inner table, sulci, fissures, cisterns.
        rim = cavity & (depth < F32(g["rim"]))
        sulcal = cerebrum & (np.abs(sulci) < width) & (depth < sd)
        xm = self.midline(y)
        callosum = (np.abs(y) < 0.33 * b) & (z < 24 * s) & (z > -5 * s)
        fissure = cerebrum & (np.abs(x - xm) < F32(g["fissure"])) & ~callosum
        # The Sylvian fissure: a near-vertical cleft running from the lateral temporal pole
        # back and inward (a line in axial slices), between the temporal and frontal lobes.
        sylvian_x = 0.9 * a - 0.32 * (y - self.sphenoid_y(x))
        sylvian = (
            cerebrum
            & (np.abs(np.abs(x) - sylvian_x) < 0.8 + 1.6 * self.atrophy)
            & (y > self.sphenoid_y(x) - 4)
            & (y < 0.2 * b)
            & (z > F32(self.z_mid + 4 * s))
            & (z < F32(self.z_mid + 34 * s))
        )
        vermis_cleft = cavity & posterior & (np.abs(x) < 1.0 + 1.5 * self.atrophy) & (y > 0.75 * b)
        spaces = rim | sulcal | fissure | sylvian | cistern | suprasellar | vermis_cleft
        hu[spaces] = csf
        tissue[spaces] = CSF
        falx = fissure & (np.abs(x - xm) < 0.55) & (depth > 0.3)
        hu[falx] = 48
        tissue[falx] = FALX

        # Deep grey nuclei and ventricles.
        deep = np.zeros(x.shape, bool)
        for side in (-1, 1):
            for centre, axes in (
                ((side * 12, -0.17 * b, 10 * s), (5, 8, 9)),  # caudate head
                ((side * 21, -0.02 * b, 0.0), (6, 13, 10)),  # lentiform nucleus
                ((side * 9, 0.12 * b, 3 * s), (8, 11, 9)),  # thalamus
            ):
                deep |= ellipsoid(x, y, z, centre, axes) < 1
        deep &= cerebrum & (tissue == WHITE)
        hu[deep] = grey - 2 + tex[deep]
        tissue[deep] = DEEP_GREY
        vent = np.zeros(x.shape, bool)
        for path in self.ventricle_path:
            vent |= tube(x, y, z, path[:, :3], path[:, 3])
        third = (
            (np.abs(x) < F32(g["third"]) / 2)
            & (np.abs(y) < 0.12 * b)
            & (z > -20 * s)
            & (z < 12 * s)
        )
        fourth = ellipsoid(
            x, y, z, (0, y_bs + 17, self.z_post + 20 * s), (5 + 3 * self.atrophy, 3.5, 8)
        )
        vent = (vent | third | (fourth < 1)) & cavity & (depth > 3)
        hu[vent] = csf
        tissue[vent] = VENTRICLE

        # Dural venous sinuses: superior sagittal, transverse, straight, sigmoid.
        dd = np.maximum(depth, 0)
        sss = cavity & (np.abs(x - xm) < 4.0 * (1 - dd / 6)) & (depth < 6) & ~posterior
        sss &= (z > F32(g["tent"])) | (y < 0)
        transverse = (
            cavity
            & (depth < 5.5)
            & (y > 0.35 * b)
            & (np.abs(z - F32(g["tent"])) < 3.5 * (1 - dd / 5.5))
        )
        straight = (
            cavity & (np.abs(x) < 3) & (np.abs(z - tent) < 3) & (y > 0.35 * b) & (y < 0.9 * b)
        )
        sinus = sss | transverse | straight
        for side in (-1, 1):
            sigmoid_path = np.array(
                [
                    (side * 0.82 * a, 0.62 * b, g["tent"]),
                    (side * 0.78 * a, 0.38 * b, self.z_post + 6 * s),
                    (side * 0.62 * a, 0.2 * b, self.z_post - 8 * s),
                ]
            )
            sinus |= cavity & tube(x, y, z, sigmoid_path, np.array([4.0, 4.0, 3.5]))
        hu[sinus] = F32(self.venous_hu) + 1.5 * tex[sinus]
        tissue[sinus] = VENOUS

    def _mimics(self, x, y, z, hu, tissue) -> None:
        if not x.size:
            return
        cavity = np.ones(x.shape, bool)
        z_lo, z_hi = float(z.min()), float(z.max())
        for m in self.mimics:
            if m.centre[2] + m.axes[2] < z_lo or m.centre[2] - m.axes[2] > z_hi:
                continue
            inside = cavity & (ellipsoid(x, y, z, m.centre, m.axes) < 1)
            hu[inside] = m.hu
            tissue[inside] = CALCIFICATION
