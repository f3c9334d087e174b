"""The plug-in's dialogs: GIMP's procedure dialog for the arguments GIMP knows when it registers the
procedures, plus what only the backend can say when the dialog opens: its style models as a gallery of
thumbnails, its super-resolution models for the chosen factor, and the factors and brush sizes its pixel
limit allows (impasto_logic decides; this file only shows). Imported by impasto.py for interactive runs.
"""

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
import impasto_logic as logic  # noqa: E402
from gi.repository import GdkPixbuf, GimpUi, GLib, Gtk  # noqa: E402

THUMB = 96  # px, the longer side of a style's thumbnail
GALLERY_ROWS = 3  # rows of thumbnails shown at most; more scroll
GALLERY_COLUMNS = 3


def thumbnail(png, size=THUMB):
    """A pixbuf of the model's thumbnail PNG scaled to fit size x size; a grey tile when there is none (or
    it does not decode) rather than a broken image."""
    pixbuf = None
    if png:
        loader = GdkPixbuf.PixbufLoader()
        try:
            loader.write(png)
            loader.close()
            pixbuf = loader.get_pixbuf()
        except GLib.Error:
            pixbuf = None
    if pixbuf is None:
        pixbuf = GdkPixbuf.Pixbuf.new(GdkPixbuf.Colorspace.RGB, False, 8, size, size)
        pixbuf.fill(0x808080FF)
        return pixbuf
    scale = size / max(pixbuf.get_width(), pixbuf.get_height())
    return pixbuf.scale_simple(max(1, round(pixbuf.get_width() * scale)),
                               max(1, round(pixbuf.get_height() * scale)), GdkPixbuf.InterpType.BILINEAR)


def _sentence(problem):
    return problem[:1].upper() + problem[1:] + "." if problem else ""


def _warning_label():
    label = Gtk.Label()
    label.set_line_wrap(True)
    label.set_max_width_chars(48)
    label.set_xalign(0.0)
    label.set_no_show_all(True)  # shown only while there is something to say
    return label


def _show(label, text):
    label.set_text(text)
    label.set_visible(bool(text))


def _place_first(dialog, widget):
    """Put `widget` at the top of the dialog, above GIMP's argument widgets: it is the first choice."""
    area = dialog.get_content_area()
    area.pack_start(widget, False, False, 6)
    area.reorder_child(widget, 0)
    widget.show_all()


def _labelled(text, widget):
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    label = Gtk.Label.new_with_mnemonic(text)
    label.set_mnemonic_widget(widget)
    row.pack_start(label, False, False, 0)
    row.pack_start(widget, True, True, 0)
    return row


# -- stylize -------------------------------------------------------------------------------------------

def _gallery(models, current):
    """A flow box of thumbnails with the display name beneath, the current style selected."""
    flow = Gtk.FlowBox()
    flow.set_selection_mode(Gtk.SelectionMode.SINGLE)
    flow.set_homogeneous(True)
    flow.set_min_children_per_line(GALLERY_COLUMNS)
    flow.set_max_children_per_line(8)
    flow.set_column_spacing(4)
    flow.set_row_spacing(4)
    flow.set_valign(Gtk.Align.START)  # rows keep their height when the scrolled window has room to spare
    for model in models:
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=2)
        box.pack_start(Gtk.Image.new_from_pixbuf(thumbnail(model.thumbnail_png)), False, False, 0)
        name = Gtk.Label(label=model.display_name)
        name.set_line_wrap(True)
        name.set_justify(Gtk.Justification.CENTER)
        name.set_max_width_chars(12)
        box.pack_start(name, False, False, 0)
        child = Gtk.FlowBoxChild()
        child.add(box)
        child.set_tooltip_text(model.description or model.name)
        flow.add(child)
        if model.name == current:
            flow.select_child(child)
    return flow


def stylize_dialog(procedure, config, backend, size):
    """The style dialog for a region of `size` (width, height). False when the user cancels."""
    models = backend.models
    if not models:
        raise logic.PluginError("the backend has no style models: add one with `impasto models import`")
    width, height = size
    GimpUi.init("impasto")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Impasto Style")
    dialog.fill(["brush-size", "strength", "preserve-colors", "refine"])
    flow = _gallery(models, config.get_property("style"))
    scroll = Gtk.ScrolledWindow()
    scroll.set_policy(Gtk.PolicyType.NEVER, Gtk.PolicyType.AUTOMATIC)
    # As tall as the thumbnails need, up to GALLERY_ROWS rows; more styles scroll.
    scroll.set_propagate_natural_height(True)
    scroll.set_max_content_height(GALLERY_ROWS * (THUMB + 48))
    scroll.set_min_content_width(GALLERY_COLUMNS * (THUMB + 24))
    scroll.add(flow)
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
    title = Gtk.Label(label="Style")
    title.set_xalign(0.0)
    box.pack_start(title, False, False, 0)
    box.pack_start(scroll, True, True, 0)
    warning = _warning_label()
    box.pack_start(warning, False, False, 0)
    _place_first(dialog, box)

    def check(*_):
        problem = logic.stylize_problem(width, height, config.get_property("brush-size"), backend.max_pixels)
        if not problem and not flow.get_selected_children():
            problem = "choose a style"
        _show(warning, _sentence(problem))
        dialog.set_response_sensitive(Gtk.ResponseType.OK, not problem)

    def activated(*_):  # a double click on a thumbnail is OK, when OK is possible
        if not warning.get_visible():
            dialog.response(Gtk.ResponseType.OK)

    config.connect("notify::brush-size", check)
    flow.connect("selected-children-changed", check)
    flow.connect("child-activated", activated)
    check()
    accepted = dialog.run()
    if accepted:
        chosen = flow.get_selected_children()
        config.set_property("style", models[chosen[0].get_index()].name)
    dialog.destroy()
    return accepted


# -- upscale -------------------------------------------------------------------------------------------

def upscale_dialog(procedure, config, backend, sizes):
    """The upscale dialog for layer regions of `sizes`: factors the backend's limit allows (the others
    greyed, with the reason beneath), and the models for the chosen factor. False when the user cancels."""
    choices = logic.upscale_choices(sizes, backend.max_pixels)
    factor = logic.pick_factor(choices, logic.parse_factor(config.get_property("factor")))
    if factor is None:
        raise logic.PluginError(logic.nothing_fits(choices))
    models = backend.models
    GimpUi.init("impasto")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Upscale with Impasto")
    dialog.fill(["new-image"])

    combo = Gtk.ComboBoxText()
    current = {"model": (config.get_property("model") or "").strip(), "factor": factor}

    def fill_models():
        combo.remove_all()
        ids = []
        for model_id, label in logic.model_choices(models, current["factor"]):
            combo.append(model_id or "default", label)
            ids.append(model_id)
        chosen = current["model"] if current["model"] in ids else ids[0]
        combo.set_active_id(chosen or "default")

    def model_changed(_combo):
        active = combo.get_active_id()
        if active is not None:
            current["model"] = "" if active == "default" else active

    def toggled(button, f):
        if button.get_active():
            current["factor"] = f
            fill_models()

    buttons = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
    group = active = None
    for choice in choices:
        button = Gtk.RadioButton.new_with_label_from_widget(group, f"×{choice.factor}")
        group = group or button
        button.set_sensitive(choice.enabled)  # greyed, and the reason is written beneath
        if not choice.enabled:
            button.set_tooltip_text(_sentence(choice.reason))
        if choice.factor == factor:
            button.set_active(True)
            active = button
        button.connect("toggled", toggled, choice.factor)
        buttons.pack_start(button, False, False, 0)
    fill_models()
    combo.connect("changed", model_changed)
    reasons = _warning_label()
    unavailable = [_sentence(c.reason) for c in choices if not c.enabled]
    if unavailable:
        unavailable.append("Select a smaller part of the image for a larger factor.")
    _show(reasons, "\n".join(unavailable))
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
    factor_row = _labelled("Scale _factor", buttons)
    factor_row.get_children()[0].set_mnemonic_widget(active)
    box.pack_start(factor_row, False, False, 0)
    box.pack_start(reasons, False, False, 0)
    box.pack_start(_labelled("_Model", combo), False, False, 0)
    _place_first(dialog, box)
    accepted = dialog.run()
    if accepted:
        config.set_property("factor", f"x{current['factor']}")
        config.set_property("model", current["model"])
    dialog.destroy()
    return accepted
