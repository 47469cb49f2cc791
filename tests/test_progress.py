"""The progress bars honour TQDM_DISABLE even though fplab passes ``disable`` itself (nbval runs
with it set; a bar left on puts output in a cell the committed notebook does not have)."""

from fplab.progress import progress_bar


def test_tqdm_disable_hides_every_bar(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(range(3), desc="x").disable
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not progress_bar(range(3), desc="x").disable
    assert progress_bar(range(3), desc="x", progress=False).disable


def test_no_fplab_module_calls_tqdm_directly():
    from pathlib import Path

    import fplab
    root = Path(fplab.__file__).parent
    direct = [str(p.relative_to(root)) for p in root.rglob("*.py")
              if p.name != "progress.py" and "import tqdm" in p.read_text()]
    assert not direct, direct
