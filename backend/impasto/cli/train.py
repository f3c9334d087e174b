"""`impasto train style|sr`, `impasto eval sr|style` and `impasto gatys`: the training half of Johnson et al. (2016)
and the Gatys et al. optimisation, from the command line."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impasto.device import pick_device
from impasto.errors import InvalidArgument

if TYPE_CHECKING:
    import torch


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="model name in the store (and default run folder)")
    p.add_argument("--iterations", type=int, help="training iterations (with --resume: train up to this many)")
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate (paper: 1e-3)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--warmup", type=int, help="linear warm-up iterations")
    p.add_argument("--tv-weight", type=float)
    p.add_argument("--loss-net", choices=["vgg19-partial", "vgg16"])
    p.add_argument("--vgg16-weights", help="VGG-16 .pth/.safetensors, or 'download' to fetch torchvision's")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--sample-every", type=int, help="write samples and loss.png every N iterations")
    p.add_argument("--no-amp", dest="amp", action="store_const", const=False,
                   help="no reduced-precision autocast (fp16 on CUDA, bf16 on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--out", dest="out_dir", help="run folder (default impasto-train/NAME)")
    p.add_argument("--resume", help="run folder or checkpoint to continue from (its config is used)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--overwrite", action="store_true", help="replace a store model of the same name")
    p.add_argument("--no-store", action="store_true", help="do not add the result to the model store")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a style or super-resolution network")
    tsub = train.add_subparsers(dest="train_command", metavar="KIND", required=True)

    st = tsub.add_parser("style", help="train a feed-forward style network (Johnson et al. 2016)")
    st.add_argument("--style-image", help="the style to learn (required unless --resume)")
    st.add_argument("--content", help="folder of training photos (paper: COCO)")
    st.add_argument("--image-size", type=int, help="training crop size (paper: 256)")
    st.add_argument("--style-size", type=int, help="long side of the style image (default 256)")
    st.add_argument("--content-weight", type=float)
    st.add_argument("--style-weight", type=float)
    st.add_argument("--style-ramp", type=int,
                    help="iterations over which the style weight rises from 0, content first (default 400; 0: off)")
    st.add_argument("--grid-weight", type=float,
                    help="weight of the penalty on a texture fixed to the network's 4-pixel period "
                         "(default 1e4; 0: off)")
    st.add_argument("--init-from", metavar="MODEL",
                    help="start from this style network's weights (a store name or a .safetensors file): "
                         "fine-tune it instead of training from scratch")
    st.add_argument("--content-layer")
    st.add_argument("--style-layers", type=_names, help="comma-separated, e.g. relu1_2,relu2_2,relu3_3")
    st.add_argument("--widths", type=_ints, help="channel widths, e.g. 32,64,128 (the paper's)")
    st.add_argument("--res-blocks", type=int)
    _common(st)
    st.set_defaults(func=_train_style)

    sr = tsub.add_parser("sr", help="train a super-resolution network (Johnson et al. 2016)")
    sr.add_argument("--scale", type=int, choices=[2, 4, 8], default=4)
    sr.add_argument("--data", help="folder of high-resolution photos")
    sr.add_argument("--loss", choices=["feat", "pixel"])
    sr.add_argument("--patch-size", type=int, help="HR patch size (paper: 288)")
    sr.add_argument("--channels", type=int)
    sr.add_argument("--blocks", type=int)
    sr.add_argument("--bicubic-skip", action="store_const", const=True,
                    help="learn a residual over bicubic (the net starts at bicubic)")
    sr.add_argument("--sigma", type=float,
                    help="Gaussian blur before the bicubic downsampling of the training inputs (paper: 1; 0 "
                         "matches the standard Set5/Set14 LR files, plain MATLAB bicubic)")
    sr.add_argument("--shrink-photos", dest="native_resolution", action="store_const", const=False,
                    help="shrink each photo to the patch size on its short side before cropping "
                         "(default: crop at the photo's own resolution)")
    sr.add_argument("--hold-out", type=int, metavar="K",
                    help="keep every K-th photo (sorted by path) out of training, to score on later with "
                         "`impasto eval sr --held-out K DATA`")
    sr.add_argument("--dihedral", action="store_const", const=True,
                    help="augment with 90-degree turns as well as flips (all 8 symmetries)")
    _common(sr)
    sr.set_defaults(func=_train_sr)

    ev = sub.add_parser("eval", help="evaluate models")
    esub = ev.add_subparsers(dest="eval_command", metavar="KIND", required=True)
    es = esub.add_parser("sr", help="PSNR/SSIM on the Y channel and LPIPS over HR/LR pairs or HR photos")
    es.add_argument("folder")
    es.add_argument("--scale", type=int, default=4)
    es.add_argument("--model", default="bicubic", help="bicubic, a store name, a run folder or a model file")
    es.add_argument("--device", default="auto")
    es.add_argument("--json", action="store_true", help="print the results as JSON")
    es.add_argument("--held-out", type=int, default=0, metavar="K",
                    help="score only the photos `impasto train sr --hold-out K` kept out of training")
    es.add_argument("--no-lpips", dest="lpips", action="store_false",
                    help="skip LPIPS (perceptual distance, SqueezeNet; lower is closer)")
    es.set_defaults(func=_eval_sr)

    ev_st = esub.add_parser("style", help="artifact measures of style models: 4-pixel grid and edge bands")
    ev_st.add_argument("photos", nargs="*", help="photos to stylize (default: the bundled sample photos)")
    ev_st.add_argument("--model", action="append", dest="models", metavar="NAME",
                       help="a style model (repeat for more; default: every bundled style)")
    ev_st.add_argument("--size", type=int, default=512, help="long side the photos are resized to (default 512)")
    ev_st.add_argument("--device", default="cpu", help="default cpu (the measures do not need speed)")
    ev_st.add_argument("--json", action="store_true", help="print the results as JSON")
    ev_st.set_defaults(func=_eval_style)

    g = sub.add_parser("gatys", help="optimisation-based style transfer (Gatys et al.), no trained network")
    g.add_argument("content")
    g.add_argument("style")
    g.add_argument("out")
    g.add_argument("--iterations", type=int, default=150)
    g.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    g.add_argument("--lr", type=float, help="default 1 (L-BFGS) or 10 (Adam, 0-255 units)")
    g.add_argument("--init", default="content", help="content, noise, or an image file to start from")
    g.add_argument("--size", type=int, default=256, help="long side to work at (default 256; 0: as is)")
    g.add_argument("--style-size", type=int, help="long side of the style image (default: --size)")
    g.add_argument("--content-weight", type=float, default=1.0)
    g.add_argument("--style-weight", type=float, default=1e2)
    g.add_argument("--tv-weight", type=float, default=0.0)
    g.add_argument("--content-layer")
    g.add_argument("--style-layers", type=_names)
    g.add_argument("--loss-net", choices=["vgg19-partial", "vgg16"], default="vgg19-partial")
    g.add_argument("--vgg16-weights")
    g.add_argument("--device", default="auto")
    g.set_defaults(func=_gatys)


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _check_store_name(args: argparse.Namespace) -> None:
    # Fail before hours of training, not after: the name must be free (or --overwrite, never a bundled one).
    name = getattr(args, "name", None)
    if name and not args.no_store:
        from impasto.models.store import ModelStore

        ModelStore().check_can_save(name, overwrite=args.overwrite)


def _store_result(save: Any, run: Any, overwrite: bool) -> None:
    # The one place training touches the model store.
    info = save(run, overwrite=overwrite)
    print(f"saved model {info.name!r} to the store ({info.path})")


def _train_style(args: argparse.Namespace) -> int:
    from impasto.train.style import StyleConfig, save_style_model, train_style

    kw = _overrides(args, StyleConfig)
    if not args.resume and not (kw.get("content") and kw.get("style_image")):
        raise InvalidArgument("--style-image IMG and --content DIR are required", hint="or --resume RUN_FOLDER")
    if args.resume:
        kw.setdefault("content", "")
        kw.setdefault("style_image", "")
        kw.setdefault("iterations", 0)  # keep the checkpoint's plan
    _check_store_name(args)
    run = train_style(StyleConfig(**kw), resume=args.resume, device=pick_device(args.device))
    last = run.history[-1] if run.history else {}
    print(f"trained {len(run.history)} iterations; last losses: "
          + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("iteration", "seconds")))
    print(f"samples and loss curve in {run.out_dir}")
    if not args.no_store:
        _store_result(save_style_model, run, args.overwrite)
    return 0


def _train_sr(args: argparse.Namespace) -> int:
    from impasto.train.sr import SRConfig, save_sr_model, train_sr

    kw = _overrides(args, SRConfig)
    if not args.resume and not kw.get("data"):
        raise InvalidArgument("--data DIR is required", hint="a folder of high-resolution photos")
    if args.resume:
        kw.setdefault("data", "")
        kw.setdefault("iterations", 0)  # keep the checkpoint's plan
    _check_store_name(args)
    run = train_sr(SRConfig(**kw), resume=args.resume, device=pick_device(args.device))
    last = run.history[-1] if run.history else {}
    print(f"trained {len(run.history)} iterations; last loss {last.get('total', float('nan')):.4g}")
    print(f"samples and loss curve in {run.out_dir}")
    if not args.no_store:
        _store_result(save_sr_model, run, args.overwrite)
    return 0


def load_sr_model(spec: str) -> torch.nn.Module:
    """A store name, a training run folder / checkpoint (.pt), or an Impasto model file (.safetensors)."""
    path = Path(spec)
    if path.is_dir() or path.suffix == ".pt":
        from impasto.nets.sr import build_johnson_sr
        from impasto.train.common import load_checkpoint

        ckpt = load_checkpoint(path)
        net = build_johnson_sr(**ckpt["model_args"])
        net.load_state_dict(ckpt["model"])
        return net.eval()
    if path.suffix == ".safetensors" and path.is_file():
        from impasto.models.fileformat import build_network, load_state, read_info

        return build_network(read_info(path), load_state(path)).eval()
    from impasto.models.store import ModelStore

    return ModelStore().load(spec, kind="sr")


def _eval_sr(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from impasto.train.evaluate import evaluate, network_upscaler

    device = pick_device(args.device)
    up = None if args.model == "bicubic" else network_upscaler(load_sr_model(args.model), device)
    with tqdm(total=100, disable=args.json, unit="%", leave=False) as bar:
        res = evaluate(args.folder, args.scale, up, args.model, held_out=args.held_out,
                       progress=lambda s, f: bar.update(round(100 * f) - bar.n), lpips=args.lpips, device=device)
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0

    def lp(v: float | None) -> str:
        return "" if not args.lpips else "  LPIPS    n/a" if v is None else f"  LPIPS {v:.4f}"

    for name, m in res.images.items():
        print(f"{name:24s} PSNR {m['psnr']:7.3f} dB  SSIM {m['ssim']:.4f}{lp(m.get('lpips'))}")
    print(f"{'mean':24s} PSNR {res.psnr:7.3f} dB  SSIM {res.ssim:.4f}{lp(res.lpips)}   ({args.model}, "
          f"x{args.scale}, {len(res.images)} images, Y channel, border {args.scale}"
          + (", LPIPS-squeeze on RGB, lower is closer)" if args.lpips else ")"))
    return 0


def _eval_style(args: argparse.Namespace) -> int:
    from importlib import resources

    import numpy as np
    from PIL import Image

    from impasto.engine.engine import Engine, EngineConfig
    from impasto.engine.pixels import PixelBuffer
    from impasto.train.artifacts import artifact_measures, format_table, summarize

    if not 64 <= args.size <= 4096:
        raise InvalidArgument(f"--size must be between 64 and 4096, got {args.size}")
    paths = [Path(p) for p in args.photos] or sorted(
        p for p in Path(str(resources.files("impasto") / "data" / "samples")).iterdir() if p.suffix == ".png")
    photos = {}
    for p in paths:
        if not p.is_file():
            raise InvalidArgument(f"{p}: no such photo")
        try:
            with Image.open(p) as f:
                im = f.convert("RGB")
        except OSError as exc:
            raise InvalidArgument(f"{p}: not an image Pillow can read ({exc})") from None
        k = args.size / max(im.size)
        photos[p.stem] = np.asarray(im.resize((round(im.width * k), round(im.height * k)), Image.Resampling.LANCZOS))
    engine = Engine(EngineConfig(device=args.device))
    models = args.models or [m.name for m in engine.models("style") if m.bundled]
    result: dict[str, Any] = {"size": args.size, "device": engine.device_name, "photos": list(photos), "styles": {}}
    for name in models:
        rows = {}
        for stem, rgb in photos.items():
            out = engine.stylize(PixelBuffer.from_array(rgb), name).array
            rows[stem] = {"output": artifact_measures(out), "photo": artifact_measures(rgb)}
        result["styles"][name] = {"photos": rows, "mean": summarize(rows)}
        if not args.json:
            print(format_table(f"{name}: stylized (photo), grey levels; long side {args.size}", rows) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("grid: spread of the detail layer's mean over the 4x4 pixel positions; local: RMS of a 4-pixel "
              "pattern in 16-pixel blocks, however it varies between them; top/bottom/left/right: outer 3 rows "
              "minus rows 8-15 in")
    return 0


def _gatys(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from impasto.train.common import load_rgb, to_pil
    from impasto.train.gatys import run

    size = args.size or None
    content = load_rgb(args.content, size)
    style = load_rgb(args.style, args.style_size or size)
    init: Any = args.init
    if init not in ("content", "noise"):
        init = load_rgb(init)  # resized to the content's size inside run()
    with tqdm(total=args.iterations, unit="it") as bar:
        res = run(content, style, init=init, iterations=args.iterations, optimizer=args.optimizer, lr=args.lr,
                  loss_net=args.loss_net, vgg16_weights=args.vgg16_weights, content_layer=args.content_layer,
                  style_layers=args.style_layers, content_weight=args.content_weight,
                  style_weight=args.style_weight, tv_weight=args.tv_weight, device=pick_device(args.device),
                  progress=lambda s, f: bar.update(round(f * args.iterations) - bar.n))
    out = Path(args.out)
    to_pil(res.image).save(out)
    print(f"loss {res.history[0]:.4g} -> {res.history[-1]:.4g} after {len(res.history) - 1} iterations; wrote {out}")
    return 0
