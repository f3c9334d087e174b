#!/usr/bin/env python3
"""Impasto for GIMP 3: super-resolution (Image > Upscale with Impasto...) and neural style transfer
(Filters > Artistic > Impasto Style...), computed by the Impasto backend (`impasto serve`) over gRPC.

This file and the dialogs (impasto_dialogs.py) talk to GIMP; the decisions live in impasto_logic.py.
Each run asks the backend for its models and limits and refuses what it would refuse before any pixels
travel, then reads the pixels and gets the backend's answer, and only then changes the image, inside one
undo group: a backend that is down, refuses or fails, or a Cancel, leaves the image as it was.
"""

import json
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
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402
from impasto_common import FACTORS, REFINE, STRENGTH  # noqa: E402

try:
    import impasto_client
except Exception as exc:  # noqa: BLE001 - wrong Python or a hand-copied folder: _client() says what to do
    impasto_client = None
    _CLIENT_IMPORT_ERROR = exc

UPSCALE = "impasto-upscale"
STYLIZE = "impasto-stylize"
_RW = GObject.ParamFlags.READWRITE


PluginError = logic.PluginError


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


class Backend:
    """The backend for one run: its client, and its models and pixel limit, asked once (the dialog and
    the run both need them) and before any pixels travel."""

    def __init__(self, kind):
        self.client = _client()
        self.kind = kind
        self._models = None
        self._max_pixels = None

    @property
    def models(self):
        if self._models is None:
            self._models = _backend_call(self.client.list_models, kind=self.kind)
        return self._models

    @property
    def max_pixels(self):
        if self._max_pixels is None:
            self._max_pixels = _backend_call(self.client.server_info).max_pixels
        return self._max_pixels


class Status:
    """GIMP's progress in the status bar (with its Cancel button) for one run.

    Cancel in GIMP 3 ends the plug-in's process (app/plug-in/gimpplugin-progress.c closes it): the
    connection drops and the backend stops the job. So the progress ends before the image changes:
    from then on there is no Cancel that could leave the image half-changed.
    With IMPASTO_GIMP_PROGRESS_LOG set (the tests), each call and GIMP's answer also goes to that file as a
    JSON line."""

    def __init__(self, text):
        self._log = os.environ.get("IMPASTO_GIMP_PROGRESS_LOG")
        self._call("init", Gimp.progress_init, text)

    def show(self, text, fraction):
        if text is not None:
            self._call("set_text", Gimp.progress_set_text, text)
        if fraction is not None:
            self._call("update", Gimp.progress_update, fraction)

    def end(self):
        self._call("end", Gimp.progress_end)

    def _call(self, name, fn, *args):
        answer = fn(*args)
        if self._log:
            with open(self._log, "a", encoding="utf-8") as f:
                f.write(json.dumps([name, *args, bool(answer)], ensure_ascii=False) + "\n")
        return answer


# -- upscale ------------------------------------------------------------------------------------------

def _upscale_jobs(drawables):
    """(layer, region) for each selected layer the selection touches; PluginError when none is a layer."""
    layers = [d for d in drawables if isinstance(d, Gimp.Layer) and not d.is_group()]
    if not layers:
        raise PluginError("select at least one layer (group layers are scaled with the image)", calling=True)
    jobs = []
    for layer in layers:
        region = logic.work_region(_mask_bounds(layer), layer.get_width(), layer.get_height(),
                                   logic.UPSCALE_MARGIN)
        if region is not None:  # else the selection misses this layer: GIMP's own scaling is all it gets
            jobs.append((layer, region))
    return jobs


def upscale(image, drawables, factor, model, new_image, backend):
    """Upscale the image by `factor`, filling each selected layer with the network's output (within the
    selection, if any). Returns the image that holds the result: `image`, or a new one."""
    jobs = _upscale_jobs(drawables)
    problem = logic.upscale_problem([(r.width, r.height) for _, r in jobs], factor, model,
                                    backend.models if (model or "").strip() != "bicubic" else [],
                                    backend.max_pixels)
    if problem:
        raise PluginError(problem)
    status = Status(f"Upscaling ×{factor} with Impasto")
    progress = logic.ProgressStatus(status.show, len(jobs), ("upscale",))
    done = []  # (layer, job, result bytes): every answer is in before the image changes
    for index, (layer, region) in enumerate(jobs):
        job = logic.ImageJob(region, _formats(image, layer.has_alpha()))
        request = logic.upscale_request(job, _read(layer, region, job.formats.babl), factor, model)
        title = f"Upscaling “{layer.get_name()}” ×{factor}"
        result = _backend_call(backend.client.upscale, **request, progress=progress.job(index, title))
        done.append((layer, job, logic.check_result(result, job, factor)))
    status.end()

    target = image
    if new_image:
        target = image.duplicate()
        target.undo_disable()  # the new image starts with a clean history
        copies = logic.flatten(target.get_layers(), _children)
        originals = logic.flatten(image.get_layers(), _children)
        done = [(copies[originals.index(layer)], job, data) for layer, job, data in done]
        _name_upscaled(image, target, factor)
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
    return target


def _name_upscaled(image, target, factor):
    """The new image is named as Krita names its upscaled document: "photo ×2" (as photo ×2.xcf beside the
    original). An image without a file stays untitled."""
    source = image.get_file()
    if source is not None and source.get_path():
        name = logic.upscaled_file_name(source.get_basename(), factor)
        target.set_file(Gio.File.new_for_path(os.path.join(os.path.dirname(source.get_path()), name)))


# -- stylize ------------------------------------------------------------------------------------------

def _stylize_region(drawables):
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        raise PluginError("select exactly one layer to stylize", calling=True)
    source = drawables[0]
    region = logic.work_region(_mask_bounds(source), source.get_width(), source.get_height(),
                               logic.STYLIZE_MARGIN)
    if region is None:
        raise PluginError("the selection does not overlap the selected layer", calling=True)
    return source, region


def stylize(image, drawables, style, strength, preserve_colors, refine, brush, backend):
    """Stylize the selected layer into a new layer above it, masked to the selection. Returns the layer."""
    source, region = _stylize_region(drawables)
    problem = logic.style_problem(style, backend.models)
    if problem:
        raise PluginError(problem, calling=True)
    problem = logic.stylize_problem(region.width, region.height, brush, backend.max_pixels)
    if problem:
        raise PluginError(problem)
    taken = [layer.get_name() for layer in logic.flatten(image.get_layers(), _children)]
    name = logic.layer_name(logic.display_name(backend.models, style), logic.STYLIZE, existing=taken)
    # Always with alpha, so the new layer keeps the source's transparency whatever the source has.
    job = logic.ImageJob(region, _formats(image, True))
    request = logic.stylize_request(job, _read(source, region, job.formats.babl), style, strength,
                                    preserve_colors, refine, brush)
    status = Status(f"Impasto style: {name}")
    progress = logic.ProgressStatus(status.show, 1, ("stylize", "refine") if refine else ("stylize",))
    result = _backend_call(backend.client.stylize, **request, progress=progress.job(0, name))
    data = logic.check_result(result, job)
    status.end()

    place = logic.stylize_placement(region, source.get_offsets()[1:])
    kind = Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY \
        else Gimp.ImageType.RGBA_IMAGE
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(image, name, place.width, place.height, kind, 100.0, Gimp.LayerMode.NORMAL)
        # Same parent and index as the source: inserting there puts the new layer directly above it.
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        layer.set_offsets(place.x, place.y)
        _write(layer.get_buffer(), logic.Rect(0, 0, place.width, place.height), job.formats.babl, data)
        if not Gimp.Selection.is_empty(image):
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        layer.update(0, 0, place.width, place.height)
    finally:
        image.undo_group_end()
    return layer


# -- runs ---------------------------------------------------------------------------------------------

def _success(procedure, *values):
    result = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    for index, value in enumerate(values, start=1):
        result.remove(index)
        result.insert(index, value)
    return result


def _run(procedure, run_mode, kind, dialog, body):
    """Shared frame of both procedures: the backend, the dialog, then body(), and errors as GIMP return
    values. The backend is asked for its models and limits first, so one that is down is reported before
    any dialog."""
    try:
        backend = Backend(kind)
        if run_mode == Gimp.RunMode.INTERACTIVE and not dialog(backend):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        values = body(backend)
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
    def dialog(backend):
        import impasto_dialogs

        sizes = [(r.width, r.height) for _, r in _upscale_jobs(drawables)]
        return impasto_dialogs.upscale_dialog(procedure, config, backend, sizes)

    def body(backend):
        factor = logic.parse_factor(config.get_property("factor"))
        target = upscale(image, drawables, factor, config.get_property("model"),
                         config.get_property("new-image"), backend)
        if target != image and run_mode == Gimp.RunMode.INTERACTIVE:
            Gimp.Display.new(target)
        return (GObject.Value(Gimp.Image, target),)

    return _run(procedure, run_mode, "sr", dialog, body)


def run_stylize(procedure, run_mode, image, drawables, config, data):
    def dialog(backend):
        import impasto_dialogs

        region = _stylize_region(drawables)[1]
        return impasto_dialogs.stylize_dialog(procedure, config, backend, (region.width, region.height))

    def body(backend):
        layer = stylize(image, drawables, config.get_property("style"), config.get_property("strength"),
                        config.get_property("preserve-colors"), config.get_property("refine"),
                        config.get_property("brush-size"), backend)
        return (GObject.Value(Gimp.Layer, layer),)

    return _run(procedure, run_mode, "style", dialog, body)


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
            procedure.add_double_argument("brush-size", "_Brush size",
                                          "Size of the style's strokes: 2 paints them twice as big (the layer "
                                          "is processed at half size), 0.5 a finer texture",
                                          logic.BRUSH.low, logic.BRUSH.high, logic.BRUSH.default, _RW)
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
