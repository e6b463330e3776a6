"""Integrity: grids of one plan may not overlap, and every case carries its routing (issue 7, item 5).

Revision ID: 0009_integrity
Revises: 0008_access
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_integrity"
down_revision: str | None = "0008_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRID_TABLES = ("unit_grid", "responsibility_grid")

# Neighbouring grids share edges, and cut in metres then stored in lon/lat they cross each other by
# slivers a few micrometres wide. In a whole-city draw 98,235 pairs of unit grids do, the largest by
# 0.0014 m²; 18,812 pairs of responsibility grids, whose shared edges run for kilometres between villages,
# the largest by 0.0044 m² (4 µm along 1.1 km). 0.1 m² leaves room for edges twenty times as long and is
# still nothing anyone drew (1 cm along 10 m); activation's own rule tolerates 1 m². An EXCLUDE
# constraint cannot say this (with && it would refuse every pair of neighbours, whose bounding boxes
# overlap), so triggers do.
#
# A plan is written in bulk (a whole-city draw COPYs ~347,000 unit grids), so INSERT is checked once per
# statement over its transition table: one nested loop that probes the GiST index per new grid, relates
# only pairs whose boxes meet, each pair of new grids once, and measures the intersection only where
# interiors meet. UPDATE is checked per row, and only when the shape or the plan changes: moving a
# grid to another responsibility grid, renaming it or activating its plan costs nothing.
#
# Writers of one plan's grids take turns on the plan row, and the check runs after the lock on a fresh
# snapshot (READ COMMITTED), so two sessions cannot each add one half of an overlapping pair unseen.
REFUSE_NEW_OVERLAPS = """
CREATE FUNCTION grid_refuse_new_overlaps() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    clash record;
    first_id bigint;
    last_id bigint;
    new_count bigint;
BEGIN
    PERFORM 1 FROM grid_plan WHERE id IN (SELECT plan_id FROM new_grids) ORDER BY id FOR NO KEY UPDATE;
    -- The new grids' ids are usually one unbroken run (a draw reserves them, a sequence hands them out):
    -- then a grid is new exactly when its id lies in the run, and each pair of new grids is related once,
    -- from its smaller id. When they are not, every pair is related from both sides: slower, as sound.
    SELECT min(id), max(id), count(*) INTO first_id, last_id, new_count FROM new_grids;
    IF last_id - first_id + 1 <> new_count THEN
        first_id := NULL;
    END IF;
    -- Dynamic SQL: planned for this statement's row count, on whichever grid table fired. OFFSET 0 keeps
    -- the probe a nested loop over the GiST index; "+ 0" keeps the (plan_id, code) index out of it (ANDed
    -- with the GiST scan it would read every grid of the plan once per new grid). The CASE fixes the
    -- order: skip the second sighting of a pair of new grids, then relate, then measure. ORDER BY reads
    -- the whole join (no fast-start plan) and names the same pair every time.
    EXECUTE format($sql$
        SELECT n.plan_id, n.code, g.code AS other,
               ST_Area(ST_Intersection(n.geom, g.geom)::geography) AS area_m2
        FROM new_grids AS n
        CROSS JOIN LATERAL (
            SELECT g.id, g.code, g.geom FROM %1$I AS g
            WHERE g.geom && n.geom AND g.plan_id + 0 = n.plan_id AND g.id <> n.id
            OFFSET 0
        ) AS g
        WHERE CASE WHEN g.id BETWEEN $1 AND $2 AND g.id < n.id THEN false
                   WHEN NOT ST_Relate(n.geom, g.geom, '2********') THEN false
                   ELSE ST_Area(ST_Intersection(n.geom, g.geom)::geography) > 0.1 END
        ORDER BY n.plan_id, n.code, g.code
        LIMIT 1
    $sql$, TG_TABLE_NAME) INTO clash USING first_id, last_id;
    IF clash.code IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "%" violates overlap rule "%_no_overlap"', TG_TABLE_NAME, TG_TABLE_NAME
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = TG_TABLE_NAME || '_no_overlap',
                  TABLE = TG_TABLE_NAME,
                  DETAIL = format('%s and %s of plan %s overlap by %s m² (tolerance 0.1 m²)',
                                  clash.code, clash.other, clash.plan_id, round(clash.area_m2::numeric, 2));
    END IF;
    RETURN NULL;
END
$fn$;

CREATE FUNCTION grid_refuse_changed_overlap() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    clash record;
BEGIN
    PERFORM 1 FROM grid_plan WHERE id = NEW.plan_id FOR NO KEY UPDATE;
    EXECUTE format($sql$
        SELECT g.code, ST_Area(ST_Intersection($1, g.geom)::geography) AS area_m2 FROM %1$I AS g
        WHERE g.geom && $1 AND g.plan_id + 0 = $2 AND g.id <> $3
          AND CASE WHEN NOT ST_Relate($1, g.geom, '2********') THEN false
                   ELSE ST_Area(ST_Intersection($1, g.geom)::geography) > 0.1 END
        ORDER BY g.code
        LIMIT 1
    $sql$, TG_TABLE_NAME) INTO clash USING NEW.geom, NEW.plan_id, NEW.id;
    IF clash.code IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "%" violates overlap rule "%_no_overlap"', TG_TABLE_NAME, TG_TABLE_NAME
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = TG_TABLE_NAME || '_no_overlap',
                  TABLE = TG_TABLE_NAME,
                  DETAIL = format('%s and %s of plan %s overlap by %s m² (tolerance 0.1 m²)',
                                  NEW.code, clash.code, NEW.plan_id, round(clash.area_m2::numeric, 2));
    END IF;
    RETURN NULL;
END
$fn$;
"""

GRID_TRIGGERS = """
CREATE TRIGGER {table}_no_overlap_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_grids
    FOR EACH STATEMENT EXECUTE FUNCTION grid_refuse_new_overlaps();
CREATE TRIGGER {table}_no_overlap_update AFTER UPDATE OF geom, plan_id ON {table}
    FOR EACH ROW WHEN (NOT (OLD.geom = NEW.geom) OR OLD.plan_id <> NEW.plan_id)
    EXECUTE FUNCTION grid_refuse_changed_overlap();
"""
# Both columns are NOT NULL, so = needs no IS DISTINCT FROM; and pg_dump writes geometry's = back with its
# schema (OPERATOR(public.=)), which it cannot do for IS DISTINCT FROM: a restore would fail on it.

# A routing record: what route() decided with its reasons (the "owner" key) or, for cases loaded from
# elsewhere (the demo city), where the routing came from ("source"); and someone who answers for the case:
# the district it lies in (属地兜底: every accepted report lies in one) or a department, at a known level.
ROUTING_RECORDED = "jsonb_typeof(routing) = 'object' AND routing ?| ARRAY['owner', 'source']"
ROUTED_TO_SOMEONE = (
    "handling_level IS NOT NULL AND (district_code IS NOT NULL OR department_code IS NOT NULL)"
)


def upgrade() -> None:
    op.execute(REFUSE_NEW_OVERLAPS)
    for table in GRID_TABLES:
        op.execute(GRID_TRIGGERS.format(table=table))
    op.create_check_constraint(op.f("ck_case_record_routing_recorded"), "case_record", ROUTING_RECORDED)
    op.create_check_constraint(op.f("ck_case_record_routed_to_someone"), "case_record", ROUTED_TO_SOMEONE)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_case_record_routed_to_someone"), "case_record", type_="check")
    op.drop_constraint(op.f("ck_case_record_routing_recorded"), "case_record", type_="check")
    for table in GRID_TABLES:
        op.execute(f"DROP TRIGGER {table}_no_overlap_update ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_overlap_insert ON {table}")
    op.execute("DROP FUNCTION grid_refuse_changed_overlap()")
    op.execute("DROP FUNCTION grid_refuse_new_overlaps()")
