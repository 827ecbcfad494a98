"""A series' verdict as DICOM: a Comprehensive 3D SR following TID 1500 (Measurement Report),
and its key slices' Grad-CAM maps as Parametric Maps, written with highdicom, that a PACS stores
next to the images and a viewer lists (and overlays) with them.

Headers in, a dataset out: the caller chooses the source instances (their headers: the
patient, study and series they belong to, and the key slices the report references) and does
the writing (``hemoscan.reporting`` on demand, or the write-back to a PACS).

What the report holds, all in its content tree so no viewer can show one without the other:

- the finding "Intracranial hemorrhage" (SNOMED CT 1386000) as a measurement group of the
  series, with the model's probability (DCM "Probability", unit UCUM "1"), a qualitative
  evaluation Present / Absent at the model's threshold, the key slices as the group's source
  images, and the algorithm that made it (name, model version, how the series verdict was
  made, the threshold);
- a TEXT item that says what it is: research and triage output, never a diagnosis, and what
  the weights were trained on (phantom-trained weights say so);
- the device observer (hemoscan) and LOINC "CT Head" as the procedure reported.

A map is a Parametric Map rather than a Secondary Capture overlay: it keeps the map's values
(0 to 1, a real-world value mapping that says what they are) on the source slice's own pixel
grid and frame of reference, so a viewer overlays it on the slice with the window and colours
the reader picks, and software can read it back; a Secondary Capture would be a burned-in
picture of one rendering, with no values and no geometry. The map is the stored Grad-CAM map
with the model's framing undone (``source_grid``: the letterbox, or the square around the head the
model saw), float32, one frame per key slice.

Patient and study attributes are copied from the first source by highdicom (its Patient,
General Study and Patient Study modules) and nothing else is: no series or equipment
attribute of the source. UIDs are new, under ``uid_root``, derived from ``entropy`` (the
caller's job and series pseudonym), so a second write of the same result gives the same
UIDs: a PACS stores it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from hybrid_model.preprocess import Frame

# pydicom's root for generated UIDs (registered to pydicom for exactly this): a site with an
# organisation root of its own passes it instead.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."
SERIES_NUMBER = 9901  # where viewers list it: after the acquired series
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
TITLE = "hemoscan intracranial hemorrhage screen"


@dataclass(frozen=True)
class SeriesResult:
    """What hemoscan concluded about one series (from its ``series`` row)."""

    probability: float
    label: bool
    threshold: float
    method: str  # "series_stage" | "max_of_slices"
    model_version: str
    trained_on: str  # e.g. "synthetic CT phantoms": said in the report's statement
    key_slices: Sequence[int] = ()  # positions in ``sources`` of the slices it points at


def statement(result: SeriesResult) -> str:
    """The report's own words on what it is (the TEXT item and the series description)."""
    return (
        "Research and triage output of hemoscan, not a diagnosis and not for clinical use. "
        f"Model {result.model_version}, trained on {result.trained_on}; "
        f"series verdict by {result.method.replace('_', ' ')}."
    )


# Type 2 attributes of the Patient and General Study modules: present, possibly empty. highdicom
# copies them from the evidence; a source without one (exports often drop them) gets it empty.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _complete(ds: pydicom.Dataset) -> pydicom.Dataset:
    missing = [name for name in _TYPE2 if name not in ds]
    if not missing:
        return ds
    out = pydicom.Dataset(ds)  # a shallow copy: the caller's header is left as it is
    if "file_meta" in ds.__dict__:
        out.file_meta = ds.file_meta
    for name in missing:
        setattr(out, name, "")
    return out


def _uid(root: str, entropy: Sequence[str], part: str) -> str:
    return generate_uid(prefix=root, entropy_srcs=[*entropy, part])


def series_report(
    sources: Sequence[pydicom.Dataset],
    result: SeriesResult,
    *,
    entropy: Sequence[str],
    uid_root: str = DEFAULT_UID_ROOT,
) -> pydicom.Dataset:
    """The Comprehensive 3D SR of ``result`` for the series of ``sources`` (headers of its
    instances, pixel data not needed; at least one). ValueError when there is no source or a
    key slice is not one of them."""
    if not sources:
        raise ValueError("a report needs at least one source instance of its series")
    if any(not 0 <= i < len(sources) for i in result.key_slices):
        raise ValueError(f"key slices {list(result.key_slices)} are not all among the sources")
    sources = [_complete(ds) for ds in sources]
    key = [sources[i] for i in result.key_slices]
    algorithm = hd.sr.AlgorithmIdentification(
        name="hemoscan hybrid CNN + LSTM + GRU",
        version=result.model_version,
        parameters=[f"series verdict: {result.method}", f"threshold {result.threshold:.4f}"],
        family=codes.DCM.ArtificialIntelligence,
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(uid_root, entropy, "tracking"), identifier="intracranial hemorrhage"
        ),
        finding_type=codes.SCT.IntracranialHemorrhage,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(
                name=codes.DCM.Probability,
                value=round(float(result.probability), 6),
                unit=NO_UNITS,
                algorithm_id=algorithm,
            )
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=codes.SCT.IntracranialHemorrhage,
                value=codes.SCT.Present if result.label else codes.SCT.Absent,
            )
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in key],
    )
    group[0].ContentSequence.append(  # inside the measurement group, with the finding
        hd.sr.TextContentItem(
            name=codes.DCM.Comment,
            value=statement(result),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid(uid_root, [], "hemoscan device"), name="hemoscan", model_name="hemoscan"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.HeadCT,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(key) or [sources[0]],
        content=report[0],
        series_instance_uid=_uid(uid_root, entropy, "sr series"),
        series_number=SERIES_NUMBER,
        sop_instance_uid=_uid(uid_root, entropy, "sr instance"),
        instance_number=1,
        manufacturer="hemoscan",
        is_complete=True,
        series_description="hemoscan ICH screen: research, not for diagnosis",
    )
    return sr


GRADCAM = hd.sr.CodedConcept("GRADCAM", "99HEMOSCAN", "Grad-CAM class activation")


def source_grid(
    cam: np.ndarray, native_shape: tuple[int, int], frame: Frame | None = None
) -> np.ndarray:
    """A Grad-CAM map of the model's square input on the source image's own rows and columns:
    enlarged bilinearly to ``frame``'s square of native pixels (default: the letterbox of the
    whole image), placed where that square lies, 0 where it does not reach (a head frame ends
    around the head); its padding cut off."""
    height, width = int(native_shape[0]), int(native_shape[1])
    if frame is None:
        frame = Frame.letterbox((height, width))
    size = (frame.side, frame.side)
    full = cv2.resize(np.asarray(cam, np.float32), size, interpolation=cv2.INTER_LINEAR)
    out = np.zeros((height, width), np.float32)
    inside, within = frame.overlap(height, width)
    out[inside] = full[within]
    return np.clip(out, 0.0, 1.0)


def heatmap_map(
    source: pydicom.Dataset,
    cam: np.ndarray,
    result: SeriesResult,
    *,
    entropy: Sequence[str],
    uid_root: str = DEFAULT_UID_ROOT,
    instance_number: int = 1,
    frame: Frame | None = None,
) -> pydicom.Dataset:
    """The Parametric Map of one slice's Grad-CAM map ``cam`` (any size: the model input's
    square, covering ``frame`` of the slice) over ``source`` (the slice's header): same rows,
    columns and geometry."""
    pixels = source_grid(cam, (int(source.Rows), int(source.Columns)), frame)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="GRADCAM",
        lut_explanation="Grad-CAM class activation for intracranial hemorrhage, 0 to 1",
        unit=NO_UNITS,
        value_range=(0.0, 1.0),
        slope=1.0,
        intercept=0.0,
        quantity_definition=GRADCAM,
    )
    # The same series for every map of one report; one instance per source slice.
    instance = [*entropy, "map", str(source.SOPInstanceUID)]
    pm = hd.pm.ParametricMap(
        source_images=[_complete(source)],
        pixel_array=pixels,
        series_instance_uid=_uid(uid_root, entropy, "map series"),
        series_number=SERIES_NUMBER + 1,
        sop_instance_uid=_uid(uid_root, instance, "instance"),
        instance_number=instance_number,
        manufacturer="hemoscan",
        manufacturer_model_name="hemoscan",
        software_versions=result.model_version,
        device_serial_number="none",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="GRADCAM",
        content_description="hemoscan Grad-CAM: research, not for diagnosis",
        series_description="hemoscan Grad-CAM maps: research, not for diagnosis",
    )
    # General Series' Laterality is type 2C (paired body parts): a head is not one, so it is
    # present and empty, as dciodvfy's check of the condition wants it.
    pm.Laterality = ""
    return pm
