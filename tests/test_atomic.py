"""Atomic writers: what replaces a file or directory has the mode a plain write would have had (the umask
decides, not mkstemp's owner-only default), and a failed write leaves the old content."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from adgan.atomic import replacing, write_atomic

PROGRAM = """
import os, sys
from pathlib import Path
os.umask(int(sys.argv[2], 8))
from adgan.atomic import replacing_dir, write_atomic
root = Path(sys.argv[1])
write_atomic(root / "report.html", "<p>hi</p>")
with replacing_dir(root / "exported") as tmp:
    (tmp / "MODEL_CARD.md").write_text("card")
(root / "plain.txt").write_text("plain")
"""


@pytest.mark.parametrize("umask", ["022", "027", "077"])
def test_modes_follow_the_umask(tmp_path: Path, umask: str) -> None:
    subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path), umask], check=True)
    expected = 0o666 & ~int(umask, 8)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == expected  # as a plain write
    assert stat.S_IMODE((tmp_path / "exported").stat().st_mode) == 0o777 & ~int(umask, 8)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "table.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]
