"""One image's Grad-CAM overlay rendered on demand (``hemoscan heatmap JOB KEY --out FILE``).

The worker stores every scored image's raw map: row ``predictions.raw_map_index`` of the
batch's packed maps ``predictions.raw_map_uri`` (a ``.maps.npz``: the maps at the explained
layer's size and the model input they explain), or, for rows scored before packs, a one-image
``.npy`` at the input size. The overlay is that map enlarged and blended on the image, so it
can be drawn again at any time from the source object and the map, without the model: the
overlay PNG a worker writes is a convenience for the images people look at first, not the only
copy of the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemoscan.errors import HemoscanError, ObjectMissing, StorageError
from hemoscan.privacy import shown_key
from hemoscan.settings import Settings
from hemoscan.storage import needs_locator, open_object, open_store, read_source
from schema.models import Job, Prediction, Scan
from schema.results import locators

if TYPE_CHECKING:
    from hybrid_model.render import StoredMap


class HeatmapUnavailable(HemoscanError):
    """The image was not scored in this job, or its map or source object cannot be read."""


@dataclass(frozen=True)
class Rendered:
    png: bytes
    probability: float
    label: bool
    slice_index: int
    slices: int  # images the object holds in this job (a NIfTI volume: one per axial slice)


def _prediction(session: Session, job: Job, key: str, slice_index: int | None, shown: str):
    rows = session.execute(
        select(
            Prediction.slice_index,
            Prediction.probability,
            Prediction.label,
            Prediction.raw_map_uri,
            Prediction.raw_map_index,
        )
        .join(Scan, Scan.id == Prediction.scan_id)
        .where(Prediction.job_id == job.id, Scan.object_key == key)
        .order_by(Prediction.slice_index)
    ).all()
    if not rows:
        raise HeatmapUnavailable(
            f"{shown}: no scored image of this key in job {job.name!r} "
            "(see `hemoscan results JOB` for the keys, `hemoscan status JOB` for failures)"
        )
    if slice_index is None:
        if len(rows) > 1:
            raise HeatmapUnavailable(
                f"{shown} holds {len(rows)} scored slices: choose one with --slice "
                f"({rows[0][0]} to {rows[-1][0]})"
            )
        return rows[0], len(rows)
    for row in rows:
        if row[0] == slice_index:
            return row, len(rows)
    raise HeatmapUnavailable(
        f"{shown}: no scored slice {slice_index} (slices {rows[0][0]} to {rows[-1][0]})"
    )


def stored_map(
    settings: Settings, uri: str, row: int | None, fetched: dict[str, bytes] | None = None
) -> StoredMap:
    """An image's stored map (float32), the model input size it explains and the native square
    it covers (``render.StoredMap``), from its prediction's ``raw_map_uri`` and
    ``raw_map_index``; ``fetched`` (URI -> bytes) keeps the objects read, for a caller that
    reads several rows of one pack. StorageError or ValueError when it cannot be read."""
    from hybrid_model.render import read_map

    data = None if fetched is None else fetched.get(uri)
    if data is None:
        store, key = open_object(uri, settings)
        data = store.get(key)
        if fetched is not None:
            fetched[uri] = data
    return read_map(data, row)


def render_heatmap(
    session: Session, job: Job, key: str, settings: Settings, slice_index: int | None = None
) -> Rendered:
    """The overlay PNG of one scored image of ``job``, from its stored map and its source."""
    from hybrid_model.errors import ImageError
    from hybrid_model.preprocess import decode_object, resize_to_model
    from hybrid_model.render import overlay_png
    from workers.pipeline import decode_options

    shown = shown_key(key, settings.log_keys)
    (index, probability, label, map_uri, map_row), slices = _prediction(
        session, job, key, slice_index, shown
    )
    if not map_uri:
        raise HeatmapUnavailable(
            f"{shown}: no map was stored for this image (it was scored with "
            "HEMOSCAN_HEATMAPS=none or positives); rescore with `hemoscan scan --rescore`"
        )
    try:
        stored = stored_map(settings, map_uri, map_row)
        source = open_store(job.source_uri, settings)
        secret, locator = b"", None
        if needs_locator(source):  # a DICOMweb source: through the scan's sealed locator
            secret = settings.effective_pseudonym_key()
            locator = locators(session, job.id, [key]).get(key)
        data = read_source(source, key, locator, secret, max_bytes=settings.max_object_bytes)
    except (StorageError, ObjectMissing) as exc:
        raise HeatmapUnavailable(f"{shown}: {exc}") from None
    except ValueError as exc:
        raise HeatmapUnavailable(f"{shown}: the stored map is not readable: {exc}") from None
    try:
        # At its native resolution: the image is framed below as the map was (stored with it).
        decoded = decode_object(data, shown, size=None, options=decode_options(settings))
    except ImageError as exc:
        raise HeatmapUnavailable(
            f"{shown}: the source object no longer decodes ({exc.reason})"
        ) from None
    native = next((d.pixels for d in decoded if d.placement.index == index), None)
    if native is None:
        raise HeatmapUnavailable(f"{shown}: the source object has changed since it was scored")
    # The scoring model's input size and frame (a pack without frames: the letterbox).
    image = resize_to_model(native, stored.input_size[0], stored.frame)
    overlay = overlay_png(image, stored.cam)
    return Rendered(overlay, float(probability), bool(label), int(index), slices)
