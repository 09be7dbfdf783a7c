"""Cell dataset folder and image reading: real IDCIA data, round trips, and one-line errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellxfer.dataset import CellDataset, CellDatasetWriter, centre_mask, parse_points
from cellxfer.errors import InputError
from cellxfer.imageio import read_image


def test_reads_the_idcia_layout_as_is(idcia_dir):
    ds = CellDataset(idcia_dir)
    assert ds.layout == "idcia" and len(ds) == 95
    stored = ds.stored_counts()
    assert ds.counts() == stored  # counts.csv says image,count with .tiff names
    sample = ds[0]
    assert sample.image.shape == (600, 800) and sample.image.dtype == np.uint8
    assert sample.count == stored[sample.id] and sample.points.shape == (sample.count, 2)
    assert stored["220909_GFP-AHPC_D_MAP2ab_F4_DAPI_ND1_20x"] == 0  # the known unannotated image


def test_round_trip_keeps_uint16_and_points(tmp_path):
    w = CellDatasetWriter(tmp_path / "ds")
    img = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30)
    pts = np.array([[0.0, 0.0], [49.999, 39.5], [12.25, 3.125]])
    w.write("a", img, pts)
    w.write("b", img[:10, :10].copy(), np.zeros((0, 2)))
    counts = w.finalize({"stage": "test"})
    assert counts == {"a": 3, "b": 0}
    ds = CellDataset(tmp_path / "ds")
    s = ds["a"]
    assert s.image.dtype == np.uint16 and np.array_equal(s.image, img)
    assert np.array_equal(s.points, pts)  # exact round trip
    assert ds.stored_counts() == {"a": 3, "b": 0} and ds.manifest() == {"stage": "test"}
    mask = read_image(tmp_path / "ds" / "masks" / "a.tif")
    assert np.array_equal(np.argwhere(mask), np.array([[0, 0], [3, 12], [39, 49]]))


def test_points_round_trip_exactly_and_masks_agree(tmp_path):
    pts = np.array([[19.9996, 3.0004], [0.1 + 0.2, 1 / 3], [7.999999999, 2.5]])
    CellDatasetWriter(tmp_path / "ds").write("p", np.zeros((30, 30), np.uint8), pts)
    back = CellDataset(tmp_path / "ds").read_points("p")
    assert np.array_equal(back, pts)
    mask = read_image(tmp_path / "ds" / "masks" / "p.tif")
    assert np.array_equal(mask, centre_mask(back, (30, 30)))


def test_writer_refuses_points_outside_the_image(tmp_path):
    with pytest.raises(InputError, match="outside its 5x5 image"):
        CellDatasetWriter(tmp_path).write("x", np.zeros((5, 5), np.uint8), np.array([[5.0, 1.0]]))
    assert not list((tmp_path / "images").iterdir())


def make_dataset(root, points_text="x,y\n1,2\n", image=None):
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    tifffile.imwrite(root / "images" / "a.tif", np.zeros((8, 8), np.uint8) if image is None else image)
    (root / "points" / "a.csv").write_text(points_text)
    return root


@pytest.mark.parametrize(
    "text, message",
    [
        ("col,row\n1,2\n", "needs columns 'x' and 'y'"),
        ("x,y\n1,abc\n", "line 2 has no numeric x,y"),
        ("x,y\n1,9\n", "outside its 8x8 image"),
        ("x,y\n-0.5,1\n", "outside its 8x8 image"),
        ("", "empty points table"),
    ],
)
def test_bad_points_tables_name_the_file(tmp_path, text, message):
    ds = CellDataset(make_dataset(tmp_path / "ds", text))
    with pytest.raises(InputError, match=message) as err:
        ds[0]
    assert "a.csv" in str(err.value) and "\n" not in str(err.value)


def test_imagej_header_is_accepted():
    pts = parse_points(" ,Area,Mean,Min,Max,X,Y\n1,16,255,255,255,137.688,1.688\n", "t.csv")
    assert pts.tolist() == [[137.688, 1.688]]


def test_missing_folder_and_missing_parts(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        CellDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images/ folder"):
        CellDataset(tmp_path / "empty")
    root = make_dataset(tmp_path / "ds")
    (root / "points" / "a.csv").unlink()
    with pytest.raises(InputError, match="missing points table"):
        CellDataset(root)[0]


def test_not_an_image_and_truncated_tiff(tmp_path):
    fake = tmp_path / "fake.tif"
    fake.write_text("hello")
    with pytest.raises(InputError, match="fake.tif: not a readable TIFF"):
        read_image(fake)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.tif: not a readable TIFF"):
        read_image(cut)
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    with pytest.raises(InputError, match="bad.png: not a readable PNG"):
        read_image(bad_png)
    with pytest.raises(InputError, match="not an image cellxfer reads"):
        read_image(tmp_path / "x.jpg") if (tmp_path / "x.jpg").write_text("x") else None


def test_rgb_and_stacks_need_an_explicit_plane(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 1] = 7
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(InputError, match="3 channels.*--channel N"):
        read_image(tmp_path / "rgb.tif")
    assert (read_image(tmp_path / "rgb.tif", channel=1) == 7).all()
    with pytest.raises(InputError, match="out of range"):
        read_image(tmp_path / "rgb.tif", channel=3)
    stack = np.stack([np.full((6, 6), k, np.uint16) for k in range(4)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(InputError, match="4 planes.*--page N"):
        read_image(tmp_path / "stack.tif")
    assert read_image(tmp_path / "stack.tif", page=2).tolist() == np.full((6, 6), 2).tolist()
    tifffile.imwrite(tmp_path / "single.tif", np.zeros((6, 6), np.uint8))
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "single.png")
    for name in ("single.tif", "single.png"):  # the same answer whatever the format
        with pytest.raises(InputError, match="--page 1 given but the image has a single page"):
            read_image(tmp_path / name, page=1)
        with pytest.raises(InputError, match="--channel 2 given but the image has a single channel"):
            read_image(tmp_path / name, channel=2)
        assert read_image(tmp_path / name, page=0, channel=0).shape == (6, 6)
    ome = np.zeros((2, 3, 8, 8), np.uint8)
    ome[1, 2] = 9
    tifffile.imwrite(tmp_path / "x.ome.tif", ome, metadata={"axes": "TCYX"})
    with pytest.raises(InputError, match="--channel"):
        read_image(tmp_path / "x.ome.tif", page=1)
    assert (read_image(tmp_path / "x.ome.tif", channel=2, page=1) == 9).all()


def test_png_gray16_and_identical_rgb(tmp_path):
    img16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(img16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and np.array_equal(out, img16)
    gray = np.random.default_rng(1).integers(0, 255, (8, 8), dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "rgb_gray.png")
    assert np.array_equal(read_image(tmp_path / "rgb_gray.png"), gray)  # exact, not a guess
    colour = np.stack([gray, gray // 2, gray], -1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="--channel"):
        read_image(tmp_path / "colour.png")


def test_centre_mask_marks_floor_pixels():
    m = centre_mask(np.array([[0.2, 0.9], [3.99, 2.0]]), (4, 5))
    assert np.argwhere(m).tolist() == [[0, 0], [2, 3]] and m.max() == 255


def test_atomic_writes_get_normal_file_permissions(tmp_path):
    from cellxfer import atomic

    atomic.write_text(tmp_path / "a.csv", "x,y\n")
    # readable like any created file (0o666 less the umask at import), not mkstemp's private 0o600
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == atomic.FILE_MODE
    probe = tmp_path / "probe"
    probe.touch()
    assert atomic.FILE_MODE == probe.stat().st_mode & 0o777
