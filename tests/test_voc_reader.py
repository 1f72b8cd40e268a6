import pytest
from PIL import Image

from reproduce.data.coco import AnnotationError
from reproduce.data.voc import VocDetection, parse_voc_xml

XML = """<annotation><filename>{name}</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
</annotation>"""


@pytest.fixture()
def voc_root(tmp_path):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / d).mkdir(parents=True)
    for i in ("000001", "000002"):
        (tmp_path / "Annotations" / f"{i}.xml").write_text(XML.format(name=f"{i}.jpg"))
        Image.new("RGB", (64, 48)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
    (tmp_path / "ImageSets/Main/trainval.txt").write_text("000001\n000002\n")
    return tmp_path


def test_voc_targets(voc_root):
    ds = VocDetection(voc_root, "trainval")
    img, t = ds[0]
    assert img.shape == (3, 48, 64)
    assert t["boxes"][0].tolist() == [4.0, 5.0, 30.0, 40.0]  # 1-based inclusive -> 0-based
    assert t["labels"].tolist() == [12, 15]  # dog, person (1-based in VOC_CLASSES order)
    assert t["iscrowd"].tolist() == [0, 1]  # difficult -> ignored in COCO evaluation
    assert t["difficult"].tolist() == [0, 1]  # and by the VOC devkit metric


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s.replace("<name>dog</name>", "<name>dragon</name>"), "name"),
    (lambda s: s.replace("<xmax>30</xmax>", ""), "xmax"),
    (lambda s: s.replace("<xmax>30</xmax>", "<xmax>2</xmax>"), "bndbox"),
    (lambda s: s.replace("<width>64</width>", "<width>0</width>"), "width/height"),
    (lambda s: s[:100], "-"),
])
def test_voc_malformed(voc_root, mutate, field):
    p = voc_root / "Annotations" / "000001.xml"
    p.write_text(mutate(p.read_text()))
    with pytest.raises(AnnotationError) as e:
        parse_voc_xml(p)
    assert str(p) in str(e.value) and e.value.field == field
