"""All of hemoscan's settings, read in one place (environment variables prefixed ``HEMOSCAN_``).

The defaults are the *embedded mode*: a SQLite file and a local folder as the object store
under ``data_dir``, and no broker, so batches run in-process. Setting ``HEMOSCAN_BROKER_URL``,
``HEMOSCAN_DATABASE_URL`` and ``HEMOSCAN_S3_ENDPOINT_URL`` turns on the distributed mode.
An invalid value fails at start-up with a message naming the variable (see ``load_settings``).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hemoscan.errors import ConfigurationError

ENV_PREFIX = "HEMOSCAN_"


class HeatmapPolicy(StrEnum):
    """Which images get their Grad-CAM heatmaps written to the object store."""

    # A task's raw maps go into one packed object (workers.pipeline); overlays one each.
    ALL = "all"  # the raw map and the overlay PNG of every scored image
    MAPS = "maps"  # the raw map of every image, the overlay of flagged images only
    POSITIVES = "positives"  # both, for flagged images only
    NONE = "none"


def _default_model_path(name: str = "demo.keras") -> str:
    # The committed demo weights: trained on synthetic phantoms, NOT clinically valid.
    return str(Path(__file__).resolve().parent.parent / "hybrid_model" / "weights" / name)


class Png16(StrEnum):
    """How a 16-bit greyscale PNG's values are read (hybrid_model.preprocess.DecodeOptions)."""

    AUTO = "auto"
    WINDOWED = "windowed"
    HU1024 = "hu1024"


class DecoderIsolation(StrEnum):
    """Which DICOM decoders run in subprocesses (hybrid_model.preprocess.DecodeOptions)."""

    GDCM = "gdcm"
    COMPRESSED = "compressed"
    OFF = "off"


class S3Client(StrEnum):
    """Which client library talks to S3-compatible stores (``hemoscan.storage``)."""

    BOTO3 = "boto3"
    OBSTORE = "obstore"


class S3Checksums(StrEnum):
    """When botocore computes request checksums and validates response checksums."""

    WHEN_REQUIRED = "when_required"
    WHEN_SUPPORTED = "when_supported"


class Settings(BaseSettings):
    """hemoscan configuration. Every field is set by ``HEMOSCAN_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- where things live ---------------------------------------------------------------
    data_dir: Path = Field(
        default=Path(".hemoscan"),
        description="Folder for the embedded mode's SQLite file and local object store.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db. "
        "Default: sqlite:///<data_dir>/hemoscan.db.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker, e.g. redis://host:6379/0. Unset: batches run in-process.",
    )
    output_location: str | None = Field(
        default=None,
        description="Where heatmaps are written: s3://bucket/prefix or a folder. "
        "Default: <data_dir>/heatmaps.",
    )
    # --- object store --------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (SeaweedFS, MinIO, Ceph); unset: AWS."
    )
    s3_region: str = Field(default="us-east-1", description="Object-store region.")
    s3_access_key_id: str | None = Field(
        default=None, description="Access key; unset: boto3's own chain (AWS_* variables, roles)."
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="Secret key.")
    s3_connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect.")
    s3_read_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for data.")
    s3_max_attempts: int = Field(
        default=5, ge=1, le=20, description="botocore attempts per request (standard retry mode)."
    )
    s3_client: S3Client = Field(
        default=S3Client.OBSTORE,
        description="The S3 client: obstore (Python bindings of the Rust object_store crate; "
        'about 6 to 8 times less client CPU per request than boto3, README "Performance") or '
        "boto3 (botocore, the specified client, always supported). Both pass the same storage "
        "tests; listing, get, put, presigned links, timeouts and retries follow the "
        "HEMOSCAN_S3_* settings in either.",
    )
    s3_checksums: S3Checksums = Field(
        default=S3Checksums.WHEN_REQUIRED,
        description="CRC checksums on uploads and downloads: when_required (only where the API "
        "demands them; less CPU per request) or when_supported (botocore's default).",
    )
    # --- DICOMweb source (a PACS) ----------------------------------------------------------
    dicomweb_username: str | None = Field(
        default=None, description="Basic-auth user for a dicomweb+http(s):// source."
    )
    dicomweb_password: SecretStr | None = Field(
        default=None, description="Basic-auth password for a dicomweb+http(s):// source."
    )
    dicomweb_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for a dicomweb+http(s):// source (instead of a user and "
        "password; setting both is an error).",
    )
    dicomweb_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to connect to the DICOMweb server."
    )
    dicomweb_read_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for data from the DICOMweb server."
    )
    dicomweb_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts per DICOMweb request (connection errors, timeouts, 429 and 5xx "
        "are retried with backoff).",
    )
    dicomweb_page_size: int = Field(
        default=200,
        ge=1,
        le=10000,
        description="QIDO-RS results per page (limit/offset) when a DICOMweb source is listed.",
    )
    # --- model and scoring ---------------------------------------------------------------
    model_path: Path = Field(
        default_factory=lambda: Path(_default_model_path()),
        description="The .keras model file. Default: the phantom-trained demo model.",
    )
    series_model_path: Path | None = Field(
        default_factory=lambda: Path(_default_model_path("demo_series.keras")),
        description="The series stage (.keras, from `hemoscan train-series`) that turns a "
        "series' slice embeddings into its verdict. Default: the phantom-trained demo series "
        "stage. Empty, a missing file, or a stage trained on another slice model: series "
        "verdicts are max-of-slices (the series' largest slice probability), said in each "
        "series row's method.",
    )
    series_max_slices: int = Field(
        default=1024,
        ge=1,
        description="A series with more scored slices than this gets the max-of-slices verdict, "
        "aggregated by the database, instead of the series stage's: a series that long is not "
        "one head CT acquisition (a flat folder of PNG exports is one series by folder; a "
        "perfusion series), and the stage would reread every slice of it on each batch.",
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Decision threshold on the probability; unset: the one stored in the model.",
    )
    batch_size: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="Images per task (one broker message); the worker scores them in model calls "
        "of HEMOSCAN_MODEL_BATCH images.",
    )
    model_batch: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Images per model call (a fixed shape, compiled once); at most the batch size.",
    )
    heatmaps: HeatmapPolicy = Field(
        default=HeatmapPolicy.MAPS,
        description="Heatmaps to write: maps (every image's raw map, packed one object per "
        "task, and the overlay PNG of flagged images only; `hemoscan heatmap` and the report "
        "draw any other overlay from its map), all (the maps and every image's overlay: one "
        "more object per normal image), positives (the overlays and maps of flagged images "
        "only) or none.",
    )
    allow_non_ct: bool = Field(
        default=False, description="Score DICOM of other modalities instead of rejecting them."
    )
    png16: Png16 = Field(
        default=Png16.AUTO,
        description="16-bit PNG values: auto (detect HU+1024 exports), windowed (already "
        "windowed, scaled by 65535) or hu1024 (value - 1024 = HU). docs/decoding.md.",
    )
    head_gate: bool = Field(
        default=True,
        description="Refuse slices that are not head CT (chest, abdomen, spine, scouts) with "
        "failure reason not_head instead of scoring them; decided from the image. "
        "docs/decoding.md, Out-of-scope gate.",
    )
    isolate_decoders: DecoderIsolation = Field(
        default=DecoderIsolation.GDCM,
        description="Which DICOM decoders run in helper subprocesses, where a crash costs one "
        "image: gdcm (the GDCM fallback only), compressed (every compressed transfer syntax) "
        "or off (GDCM never used). docs/decoding.md.",
    )
    log_keys: bool = Field(
        default=False,
        description="Show full object keys in logs and failure messages (keys may hold "
        "identifiers; default: a short hash of the key). For de-identified archives.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="Secret of the keyed pseudonyms (HMAC-SHA256) that stand for study and "
        "series UIDs in the database: the same study maps to the same pseudonym across jobs "
        "while the key is kept. Required in distributed mode (every worker needs the same "
        "key); embedded mode generates one in <data_dir>/pseudonym.key. Losing it means new "
        "jobs cannot be matched to old pseudonyms.",
    )
    dicom_uid_root: str = Field(
        default="1.2.826.0.1.3680043.8.498.",
        pattern=r"^[0-9]+(\.[0-9]+)*\.$",
        max_length=40,
        description="UID root of the DICOM objects hemoscan writes (Structured Reports): your "
        "organisation's, ending in a dot. Default: pydicom's root for generated UIDs.",
    )
    # --- limits ----------------------------------------------------------------------------
    max_object_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Objects larger than this are rejected."
    )
    max_pixels: int = Field(
        default=50_000_000, ge=1, description="Pixel-count limit, checked before decoding."
    )
    # --- workers ---------------------------------------------------------------------------
    queue: str = Field(default="hemoscan", description="Celery queue the batches go to.")
    fetch_threads: int = Field(default=8, ge=1, le=256, description="Concurrent object fetches.")
    decode_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Of the fetch threads, how many decode or render at once per worker process "
        "(more threads than that wait; Python work in many threads at once costs CPU per image).",
    )
    tf_intra_threads: int = Field(
        default=0, ge=0, description="TensorFlow intra-op threads per worker (0: TF decides)."
    )
    tf_inter_threads: int = Field(
        default=0, ge=0, description="TensorFlow inter-op threads per worker (0: TF decides)."
    )
    visibility_timeout: int = Field(
        default=3600, ge=60, description="Seconds before Redis redelivers an unacknowledged batch."
    )
    max_retries: int = Field(
        default=5, ge=0, le=50, description="Retries of a batch on transient I/O errors."
    )
    max_deliveries: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Deliveries of a batch that kills its worker before its images are failed.",
    )
    # --- monitoring ------------------------------------------------------------------------
    flower_user: str = Field(default="admin", description="Flower basic-auth user.")
    flower_password: SecretStr | None = Field(
        default=None, description="Flower basic-auth password; Flower refuses to start without."
    )
    flower_port: int = Field(default=5555, ge=1, le=65535, description="Flower's port.")
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Worker Prometheus port (0: no endpoint)."
    )

    @field_validator("database_url", "broker_url", "output_location", "s3_endpoint_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("series_model_path", mode="before")
    @classmethod
    def _no_series_model(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "amqp://", "memory://")):
            raise ValueError("must start with redis://, rediss://, amqp:// or memory://")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql", "sqlite")):
            raise ValueError("must be a postgresql+psycopg2:// or sqlite:/// URL")
        return value

    # --- derived values ------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'hemoscan.db').resolve()}"

    @property
    def effective_output_location(self) -> str:
        return self.output_location or str((self.data_dir / "heatmaps").resolve())

    @property
    def distributed(self) -> bool:
        """True when batches go through a broker to Celery workers."""
        return self.broker_url is not None

    def effective_pseudonym_key(self) -> bytes:
        """The pseudonym secret: the setting; in embedded mode, without it, the one kept in
        ``<data_dir>/pseudonym.key`` (generated there, readable by its owner only, on first
        use); in distributed mode, without it, a ConfigurationError (workers that drew
        their own keys would give one study different pseudonyms)."""
        if self.pseudonym_key is not None:
            value = self.pseudonym_key.get_secret_value().encode("utf-8")
            if len(value) < 16:
                raise ConfigurationError(
                    f"{ENV_PREFIX}PSEUDONYM_KEY: must be at least 16 characters"
                )
            return value
        if self.distributed:
            raise ConfigurationError(
                f"{ENV_PREFIX}PSEUDONYM_KEY is required in distributed mode: the same secret "
                "on every worker and producer (e.g. `openssl rand -hex 32`), kept safe: "
                "without it new jobs cannot be matched to earlier pseudonyms"
            )
        return _kept_key(self.data_dir / "pseudonym.key")


def _kept_key(path: Path) -> bytes:
    """The key in ``path``, created (32 random bytes, hex, mode 0600) when absent; two
    processes creating it at once agree on the first one written."""
    import os
    import secrets

    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return path.read_bytes().strip()


def load_settings(**overrides: object) -> Settings:
    """Read the settings; an invalid value raises ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
