import pytest
import torch

from fplab import data as D
from fplab.errors import DatasetNotFoundError, IntegrityError
from fplab.paths import cache_dir, data_root


def test_synthetic_splits_shapes_and_range(synthetic):
    assert synthetic.sizes() == {"train": 600, "val": 200, "test": 200}
    assert synthetic.shape == (1, 16, 16) and synthetic.num_classes == 10
    for split in (synthetic.train, synthetic.val, synthetic.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert 0 <= split.x.min() and split.x.max() <= 1


def test_sizes_subset_is_seeded():
    a = D.load_dataset("synthetic", sizes={"train": 50}, seed=1)
    b = D.load_dataset("synthetic", sizes={"train": 50}, seed=1)
    c = D.load_dataset("synthetic", sizes={"train": 50}, seed=2)
    assert len(a.train) == 50 and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.train.x, c.train.x)


def test_select_classes_relabels(synthetic):
    sub = D.select_classes(synthetic, [7, 2])
    assert sub.num_classes == 2
    assert set(sub.train.y.tolist()) == {0, 1}
    assert len(sub.train) == (synthetic.train.y == 7).sum() + (synthetic.train.y == 2).sum()
    with pytest.raises(ValueError, match="classes contains 12; allowed: 0 to 9"):
        D.select_classes(synthetic, [12])


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"dataset='cifar100'.*'gtsrb'.*'mnist'"):
        D.load_dataset("cifar100")


def test_bad_profile_and_sizes():
    with pytest.raises(ValueError, match=r"profile='medium'.*'fast', 'full'"):
        D.load_dataset("synthetic", profile="medium")
    with pytest.raises(ValueError, match=r"sizes key='training'.*'train', 'val', 'test'"):
        D.load_dataset("synthetic", sizes={"training": 5})
    with pytest.raises(ValueError, match=r"sizes\['train'\]=0 must be a positive integer"):
        D.load_dataset("synthetic", sizes={"train": 0})


@pytest.mark.parametrize("name", ["mnist", "gtsrb", "fsdd", "olivetti"])
def test_missing_data_offline_says_where_and_how(name, tmp_path, cache):
    with pytest.raises(DatasetNotFoundError) as info:
        D.load_dataset(name, root=tmp_path / "empty", download=False)
    message = str(info.value)
    assert str(tmp_path / "empty") in message and "To get it" in message and "FPLAB_DATA" in message


def test_data_root_and_cache_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FPLAB_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("FPLAB_CACHE", str(tmp_path / "c"))
    assert data_root() == tmp_path / "d"
    assert data_root(tmp_path / "x") == tmp_path / "x"
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_checksum_mismatch_is_refused(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"hello")
    D._verify_files(tmp_path, [tmp_path / "a.bin"],
                    {"a.bin": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"})
    with pytest.raises(IntegrityError, match="a.bin failed its SHA-256 check"):
        D._verify_files(tmp_path, [tmp_path / "a.bin"], {"a.bin": "0" * 64})


def test_manifest_file_is_used(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.txt").write_bytes(b"hello")
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  sub/f.txt\n")
    with pytest.raises(IntegrityError, match="f.txt failed its SHA-256 check"):
        D._verify_files(tmp_path, [tmp_path / "sub" / "f.txt"])


def test_spectrogram_shape_and_silence():
    spec = D.spectrogram(torch.zeros(4000))
    assert spec.shape == (1, 64, 64)
    tone = D.spectrogram(torch.sin(torch.arange(8000) * 2 * torch.pi * 1000 / 8000))
    assert tone.max() > spec.max() + 50  # a tone is far louder than silence, in dB
