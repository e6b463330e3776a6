"""What `gridsvc import --mapping` says of a profile it cannot use, before it opens the database."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_commands import gridsvc


def test_a_json_profile_giving_a_number_is_refused_naming_the_key(tmp_path: Path) -> None:
    survey = tmp_path / "井盖.csv"
    survey.write_text("经度,纬度,2023\n117.0,36.6,3701020101000001\n", encoding="utf-8")
    profile = tmp_path / "p.json"
    profile.write_text('{"code": 2023}', encoding="utf-8")
    result = gridsvc(["import", "components", str(survey), "--crs", "EPSG:4490", "--mapping", str(profile)])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = " ".join(result.stderr.replace("│", " ").split())
    assert "'code' must name a file field as text, got the number 2023;" in said
    assert 'write {"code": "2023"} if the field is called 2023' in said
