#!/usr/bin/env python3
"""Impasto for GIMP 3: super-resolution (Image > Upscale with Impasto...) and neural style transfer
(Filters > Artistic > Impasto Style...), computed by the Impasto backend (`impasto serve`) over gRPC.

This file is the only part that talks to GIMP; the decisions live in impasto_logic.py. Each run reads
the pixels and gets the backend's answer first, and only then changes the image, inside one undo group:
a backend that is down or fails leaves the image as it was.
"""

import os
import sys
import traceback

# `impasto plugin install gimp` puts the pure-Python client and its dependencies in _vendor beside this
# file, the dependencies in one folder per Python version. They go first on sys.path so a distribution's
# own (possibly compiled, other-version) protobuf cannot shadow them, and protobuf must use its
# pure-Python backend inside GIMP's Python.
_HERE = os.path.dirname(os.path.realpath(__file__))
_VENDOR = os.path.join(_HERE, "_vendor")
for _path in (_HERE, _VENDOR):
    if _path not in sys.path:
        sys.path.insert(0, _path)
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
try:
    import impasto_vendor

    impasto_vendor.activate(_VENDOR, "gimp")  # this Python's wheels folder, or a problem for _client()
except Exception:  # noqa: BLE001 - a hand-copied folder: importing the client below says what is wrong
    pass

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import impasto_logic as logic  # noqa: E402
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402
from impasto_common import FACTORS, REFINE, STRENGTH  # noqa: E402

try:
    import impasto_client
except Exception as exc:  # noqa: BLE001 - wrong Python or a hand-copied folder: _client() says what to do
    impasto_client = None
    _CLIENT_IMPORT_ERROR = exc

UPSCALE = "impasto-upscale"
STYLIZE = "impasto-stylize"
_RW = GObject.ParamFlags.READWRITE


class PluginError(Exception):
    """A problem to show the user as is; `calling` marks bad arguments rather than a failed run."""

    def __init__(self, message, calling=False):
        super().__init__(message)
        self.calling = calling


# -- GIMP pixels --------------------------------------------------------------------------------------

def _mask_bounds(drawable):
    non_empty, x, y, width, height = drawable.mask_intersect()
    return logic.Rect(x, y, width, height) if non_empty else None


def _read(drawable, rect, babl):
    buffer = drawable.get_buffer()
    gegl_rect = Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height)
    return bytes(buffer.get(gegl_rect, 1.0, babl, Gegl.AbyssPolicy.NONE))


def _write(buffer, rect, babl, data):
    buffer.set(Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height), babl, data)
    buffer.flush()


def _children(item):
    return item.get_children() if item.is_group() else []


def _formats(image, with_alpha):
    return logic.formats_for_precision(image.get_precision().value_nick, with_alpha)


def _client():
    if impasto_client is None:
        python = ".".join(map(str, sys.version_info[:3]))
        raise PluginError(f"the Impasto client cannot load in GIMP's Python {python}: {_CLIENT_IMPORT_ERROR}"
                          + ("" if "impasto plugin install" in str(_CLIENT_IMPORT_ERROR) else
                             "; reinstall the plug-in with `impasto plugin install gimp`"))
    address, token = logic.backend_address()
    return impasto_client.ImpastoClient(address, token)


def _backend_call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except impasto_client.BackendError as exc:
        raise PluginError(logic.user_message(exc)) from None


# -- upscale ------------------------------------------------------------------------------------------

def upscale(image, drawables, factor, model, new_image):
    """Upscale the image by `factor`, filling each selected layer with the network's output (within the
    selection, if any). Returns the image that holds the result: `image`, or a new one."""
    layers = [d for d in drawables if isinstance(d, Gimp.Layer) and not d.is_group()]
    if not layers:
        raise PluginError("select at least one layer (group layers are scaled with the image)", calling=True)
    client = _client()
    Gimp.progress_init(f"Upscaling ×{factor} with Impasto")
    done = []  # (layer, job, result bytes): every answer is in before the image changes
    for index, layer in enumerate(layers):
        region = logic.work_region(_mask_bounds(layer), layer.get_width(), layer.get_height(),
                                   logic.UPSCALE_MARGIN)
        if region is None:
            continue  # the selection misses this layer: GIMP's own scaling is all it gets
        job = logic.ImageJob(region, _formats(image, layer.has_alpha()))
        request = logic.upscale_request(job, _read(layer, region, job.formats.babl), factor, model)
        progress = logic.progress_mapper(Gimp.progress_update, index, len(layers), ("upscale",))
        result = _backend_call(client.upscale, **request, progress=progress)
        done.append((layer, job, logic.check_result(result, job, factor)))

    target = image
    if new_image:
        target = image.duplicate()
        target.undo_disable()  # the new image starts with a clean history
        copies = logic.flatten(target.get_layers(), _children)
        originals = logic.flatten(image.get_layers(), _children)
        done = [(copies[originals.index(layer)], job, data) for layer, job, data in done]
    else:
        image.undo_group_start()
    try:
        target.scale(image.get_width() * factor, image.get_height() * factor)
        for layer, job, data in done:
            # The shadow buffer goes back through the (scaled) selection, as GIMP's own filters do.
            rect = job.region.scale(factor)
            _write(layer.get_shadow_buffer(), rect, job.formats.babl, data)
            layer.merge_shadow(True)
            layer.update(rect.x, rect.y, rect.width, rect.height)
    finally:
        if new_image:
            target.undo_enable()
        else:
            image.undo_group_end()
    Gimp.progress_update(1.0)
    return target


# -- stylize ------------------------------------------------------------------------------------------

def stylize(image, drawables, style, strength, preserve_colors, refine):
    """Stylize the selected layer into a new layer above it, masked to the selection. Returns the layer."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        raise PluginError("select exactly one layer to stylize", calling=True)
    source = drawables[0]
    region = logic.work_region(_mask_bounds(source), source.get_width(), source.get_height(),
                               logic.STYLIZE_MARGIN)
    if region is None:
        raise PluginError("the selection does not overlap the selected layer", calling=True)
    client = _client()
    Gimp.progress_init(f"Impasto style: {style}")
    # Always with alpha, so the new layer keeps the source's transparency whatever the source has.
    job = logic.ImageJob(region, _formats(image, True))
    request = logic.stylize_request(job, _read(source, region, job.formats.babl), style, strength,
                                    preserve_colors, refine)
    stages = ("stylize", "refine") if refine else ("stylize",)
    progress = logic.progress_mapper(Gimp.progress_update, 0, 1, stages)
    data = logic.check_result(_backend_call(client.stylize, **request, progress=progress), job)

    place = logic.stylize_placement(region, source.get_offsets()[1:])
    kind = Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY \
        else Gimp.ImageType.RGBA_IMAGE
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(image, f"Impasto: {style}", place.width, place.height, kind, 100.0,
                               Gimp.LayerMode.NORMAL)
        # Same parent and index as the source: inserting there puts the new layer directly above it.
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        layer.set_offsets(place.x, place.y)
        _write(layer.get_buffer(), logic.Rect(0, 0, place.width, place.height), job.formats.babl, data)
        if not Gimp.Selection.is_empty(image):
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        layer.update(0, 0, place.width, place.height)
    finally:
        image.undo_group_end()
    Gimp.progress_update(1.0)
    return layer


# -- dialogs ------------------------------------------------------------------------------------------

def _dialog(procedure, config, title, properties, model_property, kind):
    """Show GIMP's procedure dialog, plus a list of the backend's models (which GIMP cannot know when
    it registers the procedure). False when the user cancels."""
    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, Gtk

    # Asking for the models first also means a backend that is down is reported before any dialog.
    models = _backend_call(_client().list_models, kind=kind)
    GimpUi.init("impasto")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.fill(properties)
    current = config.get_property(model_property)
    combo = Gtk.ComboBoxText.new_with_entry()  # with an entry: a model name can also be typed
    if kind == "sr":
        combo.append("", "Default for the scale")
        combo.append("bicubic", "Bicubic (no network)")
    for model in models:
        combo.append(model.name, model.display_name)
    if not combo.set_active_id(current or ""):
        combo.get_child().set_text(current or "")
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    row.pack_start(Gtk.Label(label="Style" if kind == "style" else "Model"), False, False, 0)
    row.pack_start(combo, True, True, 0)
    area = dialog.get_content_area()
    area.pack_start(row, False, False, 6)
    area.reorder_child(row, 0)  # the model is the first choice to make
    row.show_all()
    accepted = dialog.run()
    if accepted:
        config.set_property(model_property, combo.get_active_id() or combo.get_child().get_text().strip())
    dialog.destroy()
    return accepted


def _success(procedure, *values):
    result = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    for index, value in enumerate(values, start=1):
        result.remove(index)
        result.insert(index, value)
    return result


def _run(procedure, run_mode, config, title, properties, model_property, kind, body):
    """Shared frame of both procedures: dialog, then body(), then errors as GIMP return values."""
    try:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            if not _dialog(procedure, config, title, properties, model_property, kind):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        values = body()
        Gimp.displays_flush()
        return _success(procedure, *values)
    except Exception as exc:
        if isinstance(exc, (PluginError, ValueError)):
            message = str(exc) if str(exc).startswith("Impasto") else f"Impasto: {exc}"
        else:  # a bug: GIMP would only say "execution error", so name it and keep the traceback
            traceback.print_exc()
            message = f"Impasto: internal error: {exc!r} (a bug; the traceback is on GIMP's standard error)"
        calling = isinstance(exc, ValueError) or getattr(exc, "calling", False)
        status = Gimp.PDBStatusType.CALLING_ERROR if calling else Gimp.PDBStatusType.EXECUTION_ERROR
        error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
        return procedure.new_return_values(status, error)


def run_upscale(procedure, run_mode, image, drawables, config, data):
    def body():
        factor = logic.parse_factor(config.get_property("factor"))
        target = upscale(image, drawables, factor, config.get_property("model"),
                         config.get_property("new-image"))
        if target != image and run_mode == Gimp.RunMode.INTERACTIVE:
            Gimp.Display.new(target)
        return (GObject.Value(Gimp.Image, target),)

    return _run(procedure, run_mode, config, "Upscale with Impasto", ["factor", "new-image"], "model", "sr",
                body)


def run_stylize(procedure, run_mode, image, drawables, config, data):
    def body():
        layer = stylize(image, drawables, config.get_property("style"), config.get_property("strength"),
                        config.get_property("preserve-colors"), config.get_property("refine"))
        return (GObject.Value(Gimp.Layer, layer),)

    return _run(procedure, run_mode, config, "Impasto Style", ["strength", "preserve-colors", "refine"],
                "style", "style", body)


# -- registration -------------------------------------------------------------------------------------

class Impasto(Gimp.PlugIn):
    def do_query_procedures(self):
        return [UPSCALE, STYLIZE]

    def do_set_i18n(self, name):
        return False  # no translations yet; saying so keeps GIMP from looking for a locale folder

    def do_create_procedure(self, name):
        if name == UPSCALE:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_upscale, None)
            procedure.set_menu_label("Upscale with _Impasto…")
            procedure.add_menu_path("<Image>/Image")
            procedure.set_documentation(
                "Upscale the image with a super-resolution network",
                "Scales the image by 2, 4 or 8 and fills each selected layer (within the selection, if "
                "any) with the output of the Impasto backend's super-resolution model, or does so in a "
                "new image. Needs the backend running: `impasto serve`.",
                name)
            factors = Gimp.Choice.new()
            for factor in FACTORS:
                factors.add(f"x{factor}", factor, f"×{factor}", "")
            procedure.add_choice_argument("factor", "Scale _factor", "Upscaling factor", factors,
                                          f"x{logic.DEFAULT_FACTOR}", _RW)
            procedure.add_string_argument("model", "_Model", "Super-resolution model; empty: the default "
                                          "for the scale, 'bicubic': plain resampling", "", _RW)
            procedure.add_boolean_argument("new-image", "Result in a _new image",
                                           "Leave this image as it is and open the result as a new one",
                                           False, _RW)
            procedure.add_image_return_value("result-image", "Result image", "The upscaled image", False,
                                             _RW)
        else:
            # Mnemonics avoid H, R, C, O, L and S: the dialog's own buttons use them.
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_stylize, None)
            procedure.set_menu_label("Impasto _Style…")
            procedure.add_menu_path("<Image>/Filters/Artistic")
            procedure.set_documentation(
                "Neural style transfer into a new layer",
                "Stylizes the selected layer with one of the Impasto backend's style networks, in a new "
                "layer above it, masked to the selection. Needs the backend running: `impasto serve`.",
                name)
            procedure.add_string_argument("style", "St_yle", "Style model name (see `impasto models list`)",
                                          "udnie", _RW)
            procedure.add_double_argument("strength", "S_trength", "Blend with the original: 0 none, 1 full",
                                          STRENGTH.low, STRENGTH.high, STRENGTH.default, _RW)
            procedure.add_boolean_argument("preserve-colors", "_Preserve colours",
                                           "Transfer the style to lightness only, keeping the colours",
                                           False, _RW)
            procedure.add_int_argument("refine", "Refinement _iterations",
                                       "Optimisation steps after the network pass (slow); 0: none",
                                       REFINE.low, REFINE.high, REFINE.default, _RW)
            procedure.add_layer_return_value("layer", "Layer", "The stylized layer", False, _RW)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                                       | Gimp.ProcedureSensitivityMask.DRAWABLES)
        procedure.set_attribution("Impasto contributors", "Impasto contributors", "2026")
        return procedure


if __name__ == "__main__":
    Gimp.main(Impasto.__gtype__, sys.argv)
