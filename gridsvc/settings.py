"""Settings, read from ``GRIDSVC_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
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
    metric_crs: str = Field(default="EPSG:4548", description="Projected CRS for areas, distances, snapping.")
    # Loose box around the city (lon/lat, CGCS2000): anything outside cannot be in the city.
    city_bbox: tuple[float, float, float, float] = (116.2, 36.0, 117.95, 37.8)
    unit_grid_code_digits: int = Field(default=15, description="14 (older practice) or 15 (newer).")
    component_code_digits: int = Field(default=16, description="16 (2-digit minor class) or 17 (3-digit).")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("unit_grid_code_digits")
    @classmethod
    def _unit_grid_digits(cls, value: int) -> int:
        if value not in (14, 15):
            raise ValueError("unit_grid_code_digits must be 14 or 15 (DOMAIN.md §2)")
        return value

    @field_validator("component_code_digits")
    @classmethod
    def _component_digits(cls, value: int) -> int:
        if value not in (16, 17):
            raise ValueError("component_code_digits must be 16 or 17 (DOMAIN.md §3)")
        return value

    @property
    def resolved_data_dir(self) -> Path:
        """The data folder as an absolute path."""
        return self.data_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
