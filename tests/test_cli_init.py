"""`ivr init DIR` lays out a hotline folder that `ivr serve` (IVR_HOME=DIR, or run from it) serves."""
from __future__ import annotations

import stat

from click.testing import CliRunner

from ivr import defaults
from ivr.cli import main
from ivr.config import Config
from ivr.flows.loader import load_flows


def test_init_lays_out_a_hotline_folder(tmp_path):
    home = tmp_path / "hotline"
    result = CliRunner().invoke(main, ["init", str(home)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in home.iterdir()} == {"audio", "flows", "ivr.env.example", "var"}
    assert stat.S_IMODE((home / "var").stat().st_mode) == 0o700
    for name in ("hotline.yaml", "hotline_ko.yaml", "data/orders.yaml", "training/hotline.yaml"):
        assert (home / "flows" / name).read_bytes() == (defaults.FLOWS / name).read_bytes()
        assert not (home / "flows" / name).is_symlink()
    assert (home / "ivr.env.example").read_text() == defaults.ENV_EXAMPLE.read_text()
    cfg = Config.from_env({"IVR_HOME": str(home)})
    assert cfg.flows_dir == home / "flows" and cfg.data_dir == home / "var"
    assert set(load_flows(cfg.flows_dir)) == {"hotline", "hotline_ko"}
    assert "IVR_HOME=" in result.output and "ivr serve" in result.output


def test_init_changes_nothing_in_a_hotline_folder(tmp_path):
    home = tmp_path / "hotline"
    assert CliRunner().invoke(main, ["init", str(home)]).exit_code == 0
    (home / "flows" / "hotline.yaml").write_text("edited by the business")
    again = CliRunner().invoke(main, ["init", str(home)])
    assert again.exit_code == 1 and "nothing changed" in again.output
    assert (home / "flows" / "hotline.yaml").read_text() == "edited by the business"


def test_check_flows_reads_the_folders_flows(tmp_path):
    home = tmp_path / "hotline"
    assert CliRunner().invoke(main, ["init", str(home)]).exit_code == 0
    (home / "flows" / "hotline_ko.yaml").unlink()
    result = CliRunner().invoke(main, ["check-flows"], env={"IVR_HOME": str(home), "IVR_FLOWS_DIR": ""})
    assert result.exit_code == 0 and "1 flow(s) OK" in result.output, result.output
