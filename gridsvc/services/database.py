"""Where the database is, and bringing it up or down: the embedded PostGIS or an external server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gridsvc.db import migrate
from gridsvc.db.embedded import ClusterStatus, EmbeddedCluster
from gridsvc.db.engine import make_engine
from gridsvc.errors import SetupProblemError
from gridsvc.repositories import health as health_repo
from gridsvc.settings import Settings


def embedded_cluster(settings: Settings, extra_conf: dict[str, str] | None = None) -> EmbeddedCluster:
    """The embedded cluster the settings describe (it may not exist yet)."""
    return EmbeddedCluster(
        settings.resolved_data_dir,
        port=settings.pg_port,
        db_name=settings.db_name,
        server_user=settings.pg_system_user,
        bin_dir=settings.pg_bin_dir,
        extra_conf=extra_conf,
    )


def database_url(settings: Settings) -> str:
    """The URL to use: GRIDSVC_DATABASE_URL, else the embedded cluster's (which must have been made)."""
    if settings.database_url:
        return settings.database_url
    cluster = embedded_cluster(settings)
    if not cluster.is_created():
        raise SetupProblemError(
            f"no database: the embedded PostGIS in {cluster.data_dir} has not been created. "
            "Run `gridsvc db up`, or set GRIDSVC_DATABASE_URL."
        )
    return cluster.url()


def masked(url: str) -> str:
    """A URL safe to print: the password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class UpReport:
    """What `db up` did."""

    mode: str
    started: bool
    url: str
    revision: str | None
    cluster: ClusterStatus | None


def bring_up(settings: Settings, extra_conf: dict[str, str] | None = None) -> UpReport:
    """Start the embedded PostGIS (unless an external URL is set), create the database, run the migrations."""
    started = False
    cluster: EmbeddedCluster | None = None
    if settings.database_url:
        url = settings.database_url
    else:
        cluster = embedded_cluster(settings, extra_conf)
        started = cluster.up()
        url = cluster.url()
    try:
        migrate.upgrade(url)
        engine = make_engine(url, pool_size=1)
        try:
            revision = migrate.current_revision(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise SetupProblemError(
            f"could not migrate the database at {masked(url)}: {type(exc).__name__}"
        ) from exc
    return UpReport(
        mode="external" if settings.database_url else "embedded",
        started=started,
        url=masked(url),
        revision=revision,
        cluster=cluster.status() if cluster else None,
    )


def bring_down(settings: Settings) -> bool:
    """Stop the embedded PostGIS; an external server is never stopped."""
    if settings.database_url:
        raise SetupProblemError("GRIDSVC_DATABASE_URL points at an external server; gridsvc does not stop it")
    return embedded_cluster(settings).down()


def describe(settings: Settings) -> dict[str, Any]:
    """What runs where: mode, folder, pid, port, socket, URL, versions, migration revision."""
    info: dict[str, Any] = {}
    if settings.database_url:
        info.update(mode="external", url=masked(settings.database_url))
        url: str | None = settings.database_url
    else:
        cluster = embedded_cluster(settings)
        status = cluster.status()
        info.update(
            mode="embedded",
            data_dir=str(status.data_dir),
            created=status.created,
            running=status.running,
            pid=status.pid,
            port=status.port,
            socket_dir=str(status.socket_dir),
            log_file=str(status.log_file),
            server_user=status.server_user,
        )
        url = cluster.url() if status.running else None
        if url:
            info["url"] = masked(url)
    if url:
        engine = make_engine(url, pool_size=1)
        try:
            with engine.connect() as conn, Session(bind=conn) as session:
                info.update(
                    reachable=True,
                    versions=health_repo.server_versions(session),
                    migration=health_repo.migration_revision(session),
                )
        except SQLAlchemyError:
            info["reachable"] = False
        finally:
            engine.dispose()
    info["migration_head"] = migrate.head_revision()
    return info
