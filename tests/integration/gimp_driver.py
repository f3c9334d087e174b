"""Runs inside real GIMP 3 (gimp-console-3.0 --batch-interpreter python-fu-eval), driven by test_gimp.py.

GIMP's Python has no numpy and no pytest, so this only builds images, calls our procedures through the
PDB exactly as a script would, and writes down what came out; test_gimp.py judges it. The work folder
($IMPASTO_GIMP_WORK, as seen inside GIMP) holds cases.json and the input pixels, and receives
results.json and the output pixels. Each case:
  {"name", "precision": "u8-non-linear", "image": [w, h], "layers": [{"name", "size": [w, h],
   "offsets": [x, y], "pixels": FILE}, ... top first], "active": NAME, "selection": [x, y, w, h] | null,
   "procedure": "impasto-upscale", "args": {...}, "read": [NAME, ...], "babl": "R'G'B'A u8"}
plus optionally "base": "gray", a layer's "alpha": false, and "file": a path to name the image after (as
if it had been opened from there). When the plug-in records its status-bar progress
($IMPASTO_GIMP_PROGRESS_LOG), each case's lines follow a ["case", NAME] line of the driver's.
"""

import json
import os
import sys
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

WORK = os.environ["IMPASTO_GIMP_WORK"]
PROGRESS_LOG = os.environ.get("IMPASTO_GIMP_PROGRESS_LOG")


def _path(name):
    return os.path.join(WORK, name)


def _rect(x, y, w, h):
    return Gegl.Rectangle.new(x, y, w, h)


def _read(drawable, babl):
    w, h = drawable.get_width(), drawable.get_height()
    return bytes(drawable.get_buffer().get(_rect(0, 0, w, h), 1.0, babl, Gegl.AbyssPolicy.NONE))


def _layers(image):
    out = []

    def walk(items):
        for item in items:
            out.append(item)
            if item.is_group():
                walk(item.get_children())

    walk(image.get_layers())
    return out


def _build(case):
    width, height = case["image"]
    precision = getattr(Gimp.Precision, case["precision"].upper().replace("-", "_"))
    gray = case.get("base") == "gray"
    base = Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB
    image = Gimp.Image.new_with_precision(width, height, base, precision)
    for position, spec in enumerate(case["layers"]):
        w, h = spec["size"]
        kind = {(False, True): Gimp.ImageType.RGBA_IMAGE, (False, False): Gimp.ImageType.RGB_IMAGE,
                (True, True): Gimp.ImageType.GRAYA_IMAGE, (True, False): Gimp.ImageType.GRAY_IMAGE}
        layer = Gimp.Layer.new(image, spec["name"], w, h, kind[gray, spec.get("alpha", True)], 100.0,
                               Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, position)
        layer.set_offsets(*spec["offsets"])
        with open(_path(spec["pixels"]), "rb") as f:
            layer.get_buffer().set(_rect(0, 0, w, h), case["babl"], f.read())
        layer.get_buffer().flush()
    by_name = {layer.get_name(): layer for layer in _layers(image)}
    image.set_selected_layers([by_name[case["active"]]])
    if case.get("file"):
        image.set_file(Gio.File.new_for_path(case["file"]))
    if case.get("selection"):
        image.select_rectangle(Gimp.ChannelOps.REPLACE, *case["selection"])
    return image, by_name


def _describe(image, case, prefix):
    """Size and layer stack of an image, with the requested layers' pixels (and masks) saved to files."""
    layers = []
    for index, layer in enumerate(_layers(image)):
        info = {"name": layer.get_name(), "index": index, "size": [layer.get_width(), layer.get_height()],
                "offsets": list(layer.get_offsets()[1:]), "mask": layer.get_mask() is not None}
        made = layer.get_name() not in {spec["name"] for spec in case["layers"]}  # the plug-in's new layer
        if layer.get_name() in case["read"] or made:
            info["pixels"] = f"{prefix}-{index}.bin"
            with open(_path(info["pixels"]), "wb") as f:
                f.write(_read(layer, case["babl"]))
            if info["mask"]:
                info["mask_pixels"] = f"{prefix}-{index}-mask.bin"
                with open(_path(info["mask_pixels"]), "wb") as f:
                    f.write(_read(layer.get_mask(), "Y u8"))
        layers.append(info)
    file = image.get_file()
    return {"size": [image.get_width(), image.get_height()], "layers": layers,
            "precision": image.get_precision().value_nick, "name": image.get_name(),
            "file": file.get_path() if file is not None else None}


def _run(case):
    image, by_name = _build(case)
    procedure = Gimp.get_pdb().lookup_procedure(case["procedure"])
    if procedure is None:
        return {"error": f"procedure {case['procedure']} is not registered (plug-in not found or broken)"}
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [by_name[n] for n in case.get("drawables", [case["active"]])])
    for key, value in case["args"].items():
        config.set_property(key, value)
    if PROGRESS_LOG:
        with open(PROGRESS_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(["case", case["name"]]) + "\n")
    values = procedure.run(config)
    status = values.index(0)
    out = {"status": status.value_nick, "message": values.index(1) if values.length() > 1 else None}
    if status != Gimp.PDBStatusType.SUCCESS:
        out["message"] = Gimp.get_pdb().get_last_error()
    out["image"] = _describe(image, case, case["name"])
    if case["procedure"] == "impasto-upscale" and status == Gimp.PDBStatusType.SUCCESS:
        result = values.index(1)
        out["same_image"] = result == image
        if result != image:
            out["result_image"] = _describe(result, case, case["name"] + "-result")
        out["message"] = None
    elif status == Gimp.PDBStatusType.SUCCESS:
        out["message"] = None
    for done in {image, values.index(1) if out.get("result_image") else image}:
        done.delete()  # batch mode has no displays to close them
    return out


results = {}
with open(_path("cases.json")) as f:
    cases = json.load(f)
for case in cases:
    try:
        results[case["name"]] = _run(case)
    except Exception:  # a broken case must not hide the others' results
        results[case["name"]] = {"error": traceback.format_exc()}
        print(traceback.format_exc(), file=sys.stderr)
with open(_path("results.json"), "w") as f:
    json.dump(results, f, indent=1)
