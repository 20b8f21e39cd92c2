"""``python -m train synth|fit|fit-temporal|fit-temporal-net|fit-sync-evidence|eval|paired|compare|export|calibrate|ensemble|footage-labels|repackage-reals|pseudo-fake-sheet|sync-pretrain``: the training tools' command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from core.calibration import IDENTITY
from core.text import plural

log = logging.getLogger("train")

DEFAULT_MODEL = "mobilenetv2_frames"  # the shipped detector's architecture (weights/README.md)


def model_spec(text: str) -> tuple[str, dict]:
    """``--model`` → (arch, config dict). ``text`` is a registered detector's name (its default
    config), ``tiny`` / ``base`` (fusion presets), a JSON file (a weights JSON: its ``arch`` and
    ``model``; else a fusion config) or inline JSON (a fusion config), with ``key=value,...``
    overrides after ``:`` (``tiny:img_size=96,num_layers=3``, ``meso4:num_frames=4``), each value
    JSON or, failing that, a bare string (``mds:audio_tower=syncnet_mouth``)."""
    from models.fusion import FusionConfig, FusionModel
    from models.registry import model_entry, registered_models

    name, _, overrides = text.partition(":")
    arch = FusionModel.arch
    if name in ("tiny", "base"):
        cfg = getattr(FusionConfig, name)().to_dict()
    elif name in registered_models():
        arch, cfg = name, {}
    elif name.lstrip().startswith("{"):
        cfg = json.loads(name)
    elif Path(name).is_file():
        data = json.loads(Path(name).read_text())
        arch = data.get("arch", arch)
        cfg = data.get("model", data)
    else:
        raise ValueError(
            f"--model {name!r}: not tiny, base, a registered model {registered_models()} or a JSON file"
        )
    for part in filter(None, overrides.split(",")):
        key, _, value = part.partition("=")
        try:
            cfg[key.strip()] = json.loads(value)
        except json.JSONDecodeError:  # a bare word is a string: audio_tower=syncnet_mouth
            cfg[key.strip()] = value.strip()
    model_entry(arch).config_class.from_dict(cfg)  # validate now, not after the data has loaded
    return arch, cfg


def cmd_synth(args: argparse.Namespace) -> int:
    from train.synth.videos import FAKE_CATEGORIES, write_dataset

    categories = args.categories.split(",") if args.categories else list(FAKE_CATEGORIES)
    labels = write_dataset(
        args.out,
        args.n,
        args.seconds,
        args.seed,
        categories,
        progress=not args.quiet,
        workers=args.workers,
        partial=args.partial,
    )
    print(f"wrote {plural(args.n, 'video')} and {labels}")
    return 0


def cmd_synth_check(args: argparse.Namespace) -> int:
    from train.synth.detection_check import run_check

    result = run_check(args.n, args.seconds, args.seed, args.step, args.weights)
    print(result.summary())
    return 0


def lightning_logs_once() -> None:
    """Lightning's package adds its own stderr handler to the ``lightning`` logger at import,
    whatever the root logger has: with ours (``main``) every Lightning INFO line printed twice.
    Theirs goes; its records reach ours through propagation."""
    import lightning  # noqa: F401  (adds the handler, once)

    if logging.getLogger().handlers:
        lg = logging.getLogger("lightning")
        for handler in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(handler)


def cmd_fit(args: argparse.Namespace) -> int:
    from train.augment import AugmentConfig
    from train.fit import FitConfig, fit
    from train.module import OptimConfig

    lightning_logs_once()

    optim = OptimConfig(
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else (5e-3 if args.optimizer == "sgd" else 1e-3),
    )
    optim = replace(
        optim,
        scheduler=args.scheduler,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        ema_decay=args.ema,
    )
    devices: str | int = int(args.devices) if args.devices.isdigit() else args.devices
    arch, model = model_spec(args.model)
    transforms = ()
    if args.pseudo_fakes:
        from train.pseudo_fake_mix import PseudoFakeConfig, PseudoFakes

        pcfg = PseudoFakeConfig()
        if args.pseudo_fakes != "default":
            names = [n.strip() for n in args.pseudo_fakes.split(",") if n.strip()]
            pcfg = PseudoFakeConfig(weights={n: pcfg.weights.get(n, 1.0) for n in names})
        transforms = (PseudoFakes(replace(pcfg, fake_p=args.pseudo_fake_p)),)
    cfg = FitConfig(
        manifest=args.manifest,
        out=args.out,
        arch=arch,
        model=model,
        init=tuple(args.init),
        optim=optim,
        augment=None if args.no_augment else AugmentConfig(repackage_p=args.augment_repackage),
        batch_size=args.batch_size,
        epoch_size=args.epoch_size,
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        max_time=args.max_time,
        balance=args.balance,
        sample_transforms=transforms,
        grad_clip=args.grad_clip,
        patience=args.patience,
        precision=args.precision,
        accelerator=args.accelerator,
        devices=devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        num_workers=args.num_workers,
        seed=args.seed,
        resume=args.resume,
        syncnet=args.syncnet,
        progress=not args.quiet,
        log_every=args.log_every,
        keep_in_memory=not args.no_keep_in_memory,
        record_ranks=args.record_ranks,
    )
    result = fit(cfg)
    if result.global_rank != 0:  # DDP: other ranks stay quiet
        return 0
    print(f"best checkpoint: {result.best_checkpoint} (val AUC {result.best_val_auc})")
    print(
        f"last checkpoint: {result.last_checkpoint}; {plural(result.epochs, 'epoch')}, {plural(result.steps, 'step')}; logs in {result.log_dir}"
    )
    return 0


def cmd_fit_temporal_net(args: argparse.Namespace) -> int:
    from train.temporal_net_fit import TemporalNetFitConfig, fit_temporal_net

    _, model = model_spec("temporal_net" + (":" + args.model if args.model else ""))
    pool_options = {
        "variants": args.variants,
        "real_repackaged": args.real_repackaged,
        "work_size": args.work_size,
        "workers": args.workers,
        "seed": args.seed,
    }
    cfg = TemporalNetFitConfig(
        manifest=args.manifest,
        out=args.out,
        pool=args.pool,
        pool_options=pool_options,
        model=model,
        steps=args.steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        val_every=args.val_every,
        seed=args.seed,
        threads=args.threads,
        calibrate=not args.no_calibration,
        labels=args.labels,
        onnx=not args.no_onnx,
    )
    result = fit_temporal_net(cfg)
    print(
        f"wrote {result.weights} (best validation score {result.best_score:.3f} at step {result.best_step})"
    )
    if result.onnx:
        print(f"wrote {result.onnx} (ONNX Runtime vs torch: max |diff| {result.onnx_max_abs_diff:.2e})")
    return 0


def cmd_fit_temporal(args: argparse.Namespace) -> int:
    from train.temporal_fit import TemporalFitConfig, fit_temporal

    _, model = model_spec("temporal_band" + (":" + args.model if args.model else ""))
    cfg = TemporalFitConfig(
        manifest=args.manifest,
        out=args.out,
        model=model,
        split=args.split,
        reencodes=args.reencodes,
        shrinkage=args.shrinkage,
        band_quantile=args.band_quantile,
        balance_sources=args.balance_sources,
        seed=args.seed,
        onnx=not args.no_onnx,
    )
    result = fit_temporal(cfg)
    print(
        f"wrote {result.weights} (band of {result.samples} real samples, {result.windows} windows; "
        f"offset {result.offset:.3f}, scale {result.scale:.3f})"
    )
    if result.onnx:
        print(f"wrote {result.onnx} (ONNX Runtime vs torch: max |diff| {result.onnx_max_abs_diff:.2e})")
    return 0


def cmd_fit_sync_evidence(args: argparse.Namespace) -> int:
    from train.calibration import read_sources
    from train.sync_evidence_fit import SyncFitConfig, fit_sync_evidence, format_validation

    model = {"features": args.features} if args.features else {}
    cfg = SyncFitConfig(
        manifest=args.manifest,
        out=args.out,
        model=model,
        mode=args.mode,
        split=args.split,
        fake_split=args.fake_split,
        validation_split=args.validation_split,
        sources=read_sources(args.labels) if args.labels else None,
        balance_sources=args.balance_sources,
        shrinkage=args.shrinkage,
        band_quantile=args.band_quantile,
        l2=args.l2,
        onnx=not args.no_onnx,
    )
    result = fit_sync_evidence(cfg, check=not args.no_validation)
    if result.validation is not None:
        print(format_validation(result.validation, cfg.mode))
    print(f"wrote {result.weights} ({cfg.mode}: {result.fit})")
    if result.onnx:
        print(f"wrote {result.onnx} (ONNX Runtime vs torch: max |diff| {result.onnx_max_abs_diff:.2e})")
    return 0


def cmd_repackage_reals(args: argparse.Namespace) -> int:
    from core.preprocess_config import DetectorConfig
    from preprocess.faces.detector import FaceDetector
    from train.repackage_reals import RepackageSpec, repackage_reals, write_label_rows

    spec = RepackageSpec(args.side, args.bitrate, args.face_scale, args.fps)
    cfg = DetectorConfig()
    detector = FaceDetector.from_weights(cfg.weights, cfg)
    rows, failed = repackage_reals(args.root, args.labels, args.out, args.split, spec, detector)
    write_label_rows(rows, args.labels_out)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    print(
        f"wrote {len(rows)} re-packaged reals ({spec.describe()}) under {args.out}; labels {args.labels_out}"
    )
    return 1 if failed else 0


def cmd_footage_labels(args: argparse.Namespace) -> int:
    from train.footage_labels import footage_labels, write_labels_csv

    files = footage_labels(args.manifest)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_labels_csv(files, args.out)
    counts: dict[tuple[str, str], int] = {}
    for f in files:
        counts[f.split, f.category] = counts.get((f.split, f.category), 0) + 1
    print(f"wrote {args.out}: " + ", ".join(f"{s}/{c} {n}" for (s, c), n in sorted(counts.items())))
    return 0


def cmd_pseudo_fake_sheet(args: argparse.Namespace) -> int:
    from train.pseudo_fake_sheet import write_sheet

    print(f"wrote {write_sheet(args.manifest, args.out, args.count, args.seed)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from core.preprocess_config import load_preprocess_config
    from train.calibration import read_sources
    from train.export import export_checkpoint, export_weights

    if (args.checkpoint is None) == (args.from_weights is None):
        raise ValueError("export needs a checkpoint or --from-weights STEM (one of them)")
    if args.from_weights is not None:
        if args.preprocess_config or args.manifest:
            raise ValueError(
                "--preprocess-config and --manifest apply to a checkpoint; weights keep their JSON's"
            )
        result = export_weights(args.from_weights, args.out, onnx=not args.no_onnx)
        print(f"kept {result.weights} and {result.config} as they were")
    else:
        pcfg = load_preprocess_config(args.preprocess_config) if args.preprocess_config else None
        result = export_checkpoint(
            args.checkpoint,
            args.out or "weights/fusion",
            pcfg,
            onnx=not args.no_onnx,
            calibrate=args.manifest,
            calibrate_split=args.split,
            probability_mapping=not args.no_calibration,
            sources=read_sources(args.labels) if args.labels else None,
        )
        print(f"wrote {result.weights} and {result.config}")
        calibration = (
            json.loads(result.config.read_text(encoding="utf-8"))
            .get("extra", {})
            .get("threshold_calibration")
        )
        if calibration:
            print(
                f"decision threshold {calibration['threshold']:.4f} (balanced accuracy "
                f"{calibration['balanced_accuracy']:.3f} on {calibration['videos']} {calibration['split']} videos)"
            )
    if result.onnx:
        print(
            f"wrote {result.onnx} (ONNX Runtime vs torch: max |diff| {result.onnx_max_abs_diff:.2e}, relative above 1)"
        )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from models.registry import load_model
    from train.calibration import fit_on_manifest, format_fit, read_sources
    from weights.store import tensors_path, write_calibration

    if args.remove:
        print(f"wrote {write_calibration(tensors_path(args.weights), None)}: no probability mapping")
        return 0
    loaded = load_model(args.weights)
    sources = read_sources(args.labels) if args.labels else None
    fit = fit_on_manifest(loaded.module, args.manifest, args.split, sources, args.objective)
    print(format_fit(fit))
    print(f"wrote {write_calibration(loaded.path, fit.calibration.to_dict(), fit.to_dict())}")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from models.registry import load_model
    from train.calibration import read_sources
    from train.ensemble_fit import fit_ensemble, format_ensemble, write_ensemble

    members = [m.strip() for m in args.members.split(",") if m.strip()]
    sources = {k: v for labels in args.labels or () for k, v in read_sources(labels).items()} or None
    fit = fit_ensemble(members, args.manifest, args.split, sources, args.objective, args.held_out, args.probe)
    print(format_ensemble(fit))
    preprocess = load_model(args.preprocess_from).preprocess if args.preprocess_from else None
    if args.preprocess_config:
        from core.preprocess_config import load_preprocess_config

        preprocess = load_preprocess_config(args.preprocess_config)
    names = [n.strip() for n in args.names.replace("+", ",").split(",")] if args.names else None
    print(f"wrote {write_ensemble(fit, args.out, preprocess, names)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from submission.ensemble import is_ensemble
    from train import evaluate as ev

    threshold = None
    validation = None
    localisation = None  # only when labels carry fake segments and time scores exist
    if args.submission:
        if not args.labels:
            raise ValueError("--submission needs --labels")
        labels = ev.read_labels(args.labels)
        evaluated = ev.join(ev.read_submission(args.submission), labels, args.split)
        if args.val_threshold_from:
            source = args.val_threshold_from
            try:
                threshold = float(source)
            except ValueError:
                if source.endswith(".json"):
                    threshold = float(json.loads(Path(source).read_text())["threshold"])
                else:
                    validation = ev.join(ev.read_submission(source), labels, args.val_split)
        title = Path(args.submission).name
        if args.per_second and ev.has_segments(labels):
            timelines = ev.read_per_second(args.per_second, labels, args.split)
            localisation = ev.evaluate_localisation(timelines) if timelines else None
    else:
        if not args.manifest or not (args.checkpoint or args.weights):
            raise ValueError("give --submission with --labels, or --manifest with --checkpoint or --weights")
        split = args.split or "test"
        splits = [split] if split == "all" else [split, args.val_split]  # all: no held-out threshold
        ensemble = bool(args.weights) and is_ensemble(str(args.weights))
        if ensemble:  # members and mapping as run.sh applies them; no time scores to localise
            if args.raw:
                raise ValueError(
                    "--raw: an ensemble's probability is its members' calibrated log-odds, mapped"
                )
            scored = ev.score_ensemble_manifest(str(args.weights), args.manifest, splits)
            calibration = IDENTITY
        else:
            model = ev.load_scoring_model(args.checkpoint, args.weights)
            calibration = IDENTITY if args.raw else ev.scoring_calibration(args.weights)
            scored = ev.score_manifest(model, args.manifest, splits, calibration=calibration)
        labels = ev.manifest_labels(args.manifest)
        evaluated = ev.join(scored[split], labels, None if split == "all" else split)
        if scored.get(args.val_split):
            validation = ev.join(scored[args.val_split], labels, args.val_split)
        title = f"{Path(args.checkpoint or args.weights).name} on {split}"
        if not calibration.is_identity:
            print(
                f"calibrated: log-odds x {calibration.slope:.4g} {calibration.bias:+.4g} ({calibration.method})"
            )
        if not ensemble:
            localisation = ev.localisation_report(model, args.manifest, split, labels)
    if args.threshold is not None:
        threshold = args.threshold
    report = ev.report_for(evaluated, validation, threshold, args.threshold_method, args.resamples)
    print(ev.format_report(report))
    if evaluated.missing:
        print(f"warning: {len(evaluated.missing)} labelled videos have no score (listed in the report)")
    extra: dict = {"title": title}
    if args.by_source:
        from train.calibration import read_sources

        sources = {Path(k).name: v for k, v in read_sources(args.by_source).items()}
        if not sources:
            raise ValueError(f"{args.by_source}: --by-source needs a labels CSV with a 'source' column")
        by_source = ev.per_source(evaluated, sources, report.threshold, args.resamples)
        print("by source:\n" + "\n".join(ev.format_categories(by_source.per_category, by_source)))
        extra["per_source"] = {name: dataclasses.asdict(cat) for name, cat in by_source.per_category.items()}
        extra["per_source_intervals"] = {
            k.removeprefix("auc_vs_real:"): v.to_list()
            for k, v in by_source.intervals.items()
            if k.startswith("auc_vs_real:")
        }
    if localisation is not None:
        print(ev.format_localisation(localisation))
        extra["localisation"] = localisation.to_dict()
    json_path, png = ev.write_report(report, evaluated, args.out, extra)
    print(f"wrote {json_path} and {png}")
    return 0


def cmd_paired(args: argparse.Namespace) -> int:
    from core.files import atomic_write
    from train.compare import read_report
    from train.paired import format_paired, paired_reports

    a, b = read_report(args.a), read_report(args.b)
    rows = paired_reports(a, b, args.resamples, args.seed)
    print(format_paired(a, b, rows), flush=True)
    if args.out:
        data = {"a": a.name, "b": b.name, "resamples": args.resamples, "seed": args.seed}
        data["differences"] = [r.to_dict() for r in rows]
        atomic_write(args.out, json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from train.compare import compare

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    result = compare(
        args.reports,
        args.val or (),
        columns,
        args.sort,
        args.bold_best,
        args.out_md,
        args.out_csv,
    )
    print(result.markdown, end="")
    for path in (result.md_path, result.csv_path):
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)
    return 0


SYNC_PRETRAIN_CHECKPOINT = Path("runs/sync-pretrain/last.pt")


def cmd_sync_pretrain(args: argparse.Namespace) -> int:
    from train.sync_pretrain import SyncPretrainConfig, pretrain_syncnet

    cfg = SyncPretrainConfig(
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_clips=args.eval_clips,
        seed=args.seed,
        init=args.init,
        device=args.device,  # checked (CUDA present?) before any work
        amp=args.amp,
        max_frames=args.max_frames,
    )
    checkpoint = args.checkpoint or args.resume or SYNC_PRETRAIN_CHECKPOINT
    result = pretrain_syncnet(
        args.videos, args.out, cfg, progress=not args.quiet, checkpoint=checkpoint, resume=args.resume
    )
    print(result.summary())
    return 0


SYNC_STEPS = 1200


def cmd_sync_train(args: argparse.Namespace) -> int:
    from train.sync_data import build_cache, drop_split, load_cache
    from train.sync_mouth import SyncTrainConfig, train_sync_mouth

    sources = tuple(s if s.endswith("/") else s + "/" for s in args.sources.split(","))
    if not args.cached_only:
        build_cache(args.train, args.cache, sources, progress=not args.quiet)
    clips = load_cache(args.cache, sources)
    if args.exclude_labels:
        clips, dropped = drop_split(clips, args.exclude_labels, args.exclude_split)
        print(f"[sync] left out {len(dropped)} clips of split {args.exclude_split!r} ({args.exclude_labels})")
    cfg = SyncTrainConfig(
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
        eval_every=args.eval_every,
        init=args.init,
        lr=args.lr,
        source_weights=(("real/", 1.0), ("real_mouth/", 1.0), ("fake/", args.fake_weight)),
    )
    result = train_sync_mouth(clips, args.out, cfg, progress=not args.quiet, tensorboard=args.tensorboard)
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description="Training, evaluation and export tools.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate labelled synthetic talking-face videos")
    s.add_argument("out", type=Path)
    s.add_argument("--n", type=int, default=60, help="videos in all (half real, half fake)")
    s.add_argument("--seconds", type=float, default=3.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--categories", help="comma-separated fake categories (default: all)")
    s.add_argument("--workers", type=int, default=1, help="processes rendering in parallel")
    s.add_argument(
        "--partial",
        type=float,
        default=0.0,
        help="fraction of the fakes faked only inside a 1-3 s segment of the real clip "
        "(labels.csv: fake_start,fake_end)",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)

    c = sub.add_parser("synth-check", help="detection rate of the face detector on synthetic faces")
    c.add_argument("--n", type=int, default=20)
    c.add_argument("--seconds", type=float, default=2.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--step", type=int, default=2, help="check every STEP-th frame")
    c.add_argument("--weights", help="detector weights (default: DetectorConfig's)")
    c.set_defaults(func=cmd_synth_check)

    f = sub.add_parser("fit", help="train a detector on a preprocessing cache")
    f.add_argument(
        "--manifest", type=Path, required=True, help="CACHE/manifest.csv from python -m preprocess"
    )
    f.add_argument("--out", type=Path, required=True, help="run folder: checkpoints/, logs/")
    f.add_argument(
        "--model", default=DEFAULT_MODEL,
        help="a registered detector (mobilenetv2_frames, meso4, mesoinception4, efficientnet_b0, efficientnet_lstm, "
        "av_attention, mds, fusion_timesformer) | tiny | base (fusion presets) | config JSON; :key=value overrides "
        "(default: %(default)s, the shipped detector's architecture)",
    )  # fmt: skip
    f.add_argument(
        "--init", type=Path, action="append", default=[],
        help="start from this upstream checkpoint; repeat for a model with two (EfficientNet: timm/torchvision "
        "ImageNet B0; fusion: mmaction2 TimeSformer or ImageNet ViT; MobileNetV2 detectors: retinaface_mobilenetv2; "
        "mds, av_attention with audio_tower=syncnet_mouth: a sync model such as syncnet, whose audio tower it "
        "copies; av_attention: both, --init retinaface_mobilenetv2 --init syncnet)",
    )  # fmt: skip
    f.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    f.add_argument("--lr", type=float, help="default 5e-3 (sgd) / 1e-3 (adamw)")
    f.add_argument("--weight-decay", type=float, default=1e-4)
    f.add_argument("--scheduler", choices=("plateau", "cosine", "none"), default="plateau")
    f.add_argument("--warmup-steps", type=int, default=0)
    f.add_argument("--label-smoothing", type=float, default=0.0)
    f.add_argument("--ema", type=float, default=0.0, help="weight-average decay, e.g. 0.995 (0: off)")
    f.add_argument("--max-time", type=float, help="stop training after this many seconds")
    f.add_argument("--batch-size", type=int, default=8, help="per process (a step takes × devices × nodes)")
    f.add_argument("--epochs", type=int, default=30)
    f.add_argument("--epoch-size", type=int, help="training samples per epoch (default: the train split)")
    f.add_argument("--max-steps", type=int, default=-1)
    f.add_argument(
        "--balance", choices=("sampler", "loss", "category", "category_source", "none"), default="sampler"
    )
    f.add_argument(
        "--pseudo-fakes", metavar="CATEGORIES",
        help="forge fakes from real training samples on the fly: 'default' or a comma list of "
        "self_blend, mouth_rerender, blend_flicker, audio_shift, audio_desync (train.pseudo_fakes)",
    )  # fmt: skip
    f.add_argument("--pseudo-fake-p", type=float, default=0.5, help="share of real samples forged")
    f.add_argument("--grad-clip", type=float, default=1.0)
    f.add_argument("--patience", type=int, default=8, help="early-stopping epochs (0: off)")
    f.add_argument("--no-augment", action="store_true")
    f.add_argument(
        "--augment-repackage",
        type=float,
        default=0.0,
        help="share of training clips whose crops are re-packaged (downscaled, H.264, scaled back; both classes)",
    )
    f.add_argument("--precision", default="auto", help="auto | 32-true | 16-mixed | bf16-mixed")
    f.add_argument("--accelerator", default="auto")
    f.add_argument("--devices", default="auto", help="processes per machine, e.g. 8 (or auto)")
    f.add_argument("--strategy", default="auto", help="e.g. ddp (several devices or machines)")
    f.add_argument("--num-nodes", type=int, default=1, help="machines (each runs --devices processes)")
    f.add_argument("--num-workers", type=int, default=0)
    f.add_argument(
        "--no-keep-in-memory", action="store_true",
        help="read samples from the cache at every draw instead of keeping them (caches larger than memory / ranks)",
    )  # fmt: skip
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--resume", type=Path, help="checkpoint to resume from (e.g. RUN/checkpoints/last.ckpt)")
    f.add_argument(
        "--syncnet", choices=("frozen",), default="frozen",
        help="cached samples carry SyncNet's output only, so SyncNet stays frozen",
    )  # fmt: skip
    f.add_argument("--log-every", type=int, default=10, help="steps between logged training metrics")
    f.add_argument(
        "--record-ranks", action="store_true",
        help="each process writes OUT/ranks/rankN.json: its final weights' digest and the samples it read",
    )  # fmt: skip
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=cmd_fit)

    t = sub.add_parser(
        "fit-temporal", help="temporal_band: fit the band of real motion on a 'windows' cache's real clips"
    )
    t.add_argument(
        "--manifest", type=Path, required=True, help="CACHE/manifest.csv (sample.sampling 'windows')"
    )
    t.add_argument("--out", type=Path, required=True, help="weights stem: STEM.safetensors/.json/.onnx")
    t.add_argument(
        "--model", default="", help="temporal_band config overrides, e.g. features=smooth,split=whole"
    )
    t.add_argument("--split", default="train", help="the manifest split whose real clips set the band")
    t.add_argument("--reencodes", type=int, default=3, help="re-encoded copies of each real sample")
    t.add_argument("--shrinkage", type=float, default=0.1, help="covariance shrinkage towards its diagonal")
    t.add_argument("--band-quantile", type=float, default=0.95, help="real quantile that scores 0.5")
    t.add_argument(
        "--balance-sources", action="store_true", help="every source folder of real clips weighs alike"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-onnx", action="store_true")
    t.set_defaults(func=cmd_fit_temporal)

    tn = sub.add_parser(
        "fit-temporal-net",
        help="temporal_net: forge a pool of temporal pseudo-fakes from a 'windows' cache's real clips, train, export",
    )
    tn.add_argument(
        "--manifest", type=Path, required=True, help="CACHE/manifest.csv (sample.sampling 'windows')"
    )
    tn.add_argument("--out", type=Path, required=True, help="weights stem: STEM.safetensors/.json/.onnx")
    tn.add_argument(
        "--pool", type=Path, help="the forged pool (.npz): reused when it exists, else written there"
    )
    tn.add_argument("--model", default="", help="temporal_net config overrides, e.g. hidden=8,split=whole")
    tn.add_argument("--variants", type=int, default=2, help="forgeries per category per real clip")
    tn.add_argument("--real-repackaged", type=int, default=3, help="repackaged copies of each real clip")
    tn.add_argument("--work-size", type=int, default=112, help="crop side the pool is forged at")
    tn.add_argument("--workers", type=int, default=1, help="processes forging the pool")
    tn.add_argument("--steps", type=int, default=600, help="full-batch steps of the head")
    tn.add_argument("--lr", type=float, default=1e-2)
    tn.add_argument("--weight-decay", type=float, default=1e-2)
    tn.add_argument("--val-every", type=int, default=25)
    tn.add_argument("--threads", type=int, default=1, help="torch threads")
    tn.add_argument("--labels", type=Path, help="labels CSV with a source column (calibration by source)")
    tn.add_argument("--no-calibration", action="store_true")
    tn.add_argument("--seed", type=int, default=0)
    tn.add_argument("--no-onnx", action="store_true")
    tn.set_defaults(func=cmd_fit_temporal_net)

    se = sub.add_parser(
        "fit-sync-evidence",
        help="sync_evidence: fit the lip-sync detector on a cache's SyncNet latencies; leave-generator-out report",
    )
    se.add_argument("--manifest", type=Path, required=True, help="CACHE/manifest.csv made with SyncNet on")
    se.add_argument("--out", type=Path, required=True, help="weights stem: STEM.safetensors/.json/.onnx")
    se.add_argument("--mode", choices=("band", "logistic"), default="band", help="one-class band or logistic")
    se.add_argument(
        "--features",
        default="",
        help="comma-separated latency features (models.sync_evidence.FEATURES; default: the model's)",
    )
    se.add_argument("--split", default="train", help="the manifest split whose real clips the fit reads")
    se.add_argument("--fake-split", default="val", help="logistic: the split whose labelled fakes it reads")
    se.add_argument(
        "--validation-split", default="val", help="reals of this split against each fake source (a generator)"
    )
    se.add_argument("--labels", type=Path, help="labels CSV with a 'source' column (train footage-labels)")
    se.add_argument(
        "--balance-sources", action="store_true", help="band: every real source folder weighs alike"
    )
    se.add_argument(
        "--shrinkage", type=float, default=0.1, help="band: covariance shrinkage towards its diagonal"
    )
    se.add_argument("--band-quantile", type=float, default=0.95, help="band: real quantile that scores 0.5")
    se.add_argument("--l2", type=float, default=0.01, help="logistic: ridge penalty on standardised weights")
    se.add_argument("--no-validation", action="store_true", help="skip the leave-generator-out report")
    se.add_argument("--no-onnx", action="store_true")
    se.set_defaults(func=cmd_fit_sync_evidence)

    fl = sub.add_parser(
        "footage-labels", help="a real-footage set's MANIFEST.tsv -> labels CSV (reals train, fakes val)"
    )
    fl.add_argument("manifest", type=Path, help="MANIFEST.tsv with file, label, kind, group columns")
    fl.add_argument("--out", type=Path, required=True)
    fl.set_defaults(func=cmd_footage_labels)

    rp = sub.add_parser(
        "repackage-reals",
        help="real videos of a split re-packaged like generated talking heads (face-centred square, "
        "low bitrate): hard reals for calibration",
    )
    rp.add_argument("root", type=Path, help="the folder the labels' filenames are relative to")
    rp.add_argument("--labels", type=Path, required=True, help="labels CSV (train footage-labels)")
    rp.add_argument("--out", type=Path, required=True, help="folder for repackaged/... copies")
    rp.add_argument("--labels-out", type=Path, required=True, help="labels CSV of the copies")
    rp.add_argument("--split", default="val")
    rp.add_argument("--side", type=int, default=512, help="output square, pixels")
    rp.add_argument("--bitrate", type=int, default=550_000, help="video bits per second")
    rp.add_argument("--face-scale", type=float, default=2.2, help="square side / face box side")
    rp.add_argument("--fps", type=float, help="output rate (frames repeated/dropped); default: the source's")
    rp.set_defaults(func=cmd_repackage_reals)

    ps = sub.add_parser("pseudo-fake-sheet", help="PNG: real samples of a cache and their pseudo-fakes")
    ps.add_argument("--manifest", type=Path, required=True)
    ps.add_argument("--out", type=Path, required=True)
    ps.add_argument("--count", type=int, default=6, help="real samples (rows)")
    ps.add_argument("--seed", type=int, default=0)
    ps.set_defaults(func=cmd_pseudo_fake_sheet)

    e = sub.add_parser("export", help="checkpoint -> weights (safetensors + JSON) + ONNX")
    e.add_argument("checkpoint", type=Path, nargs="?")
    e.add_argument(
        "--from-weights",
        help="an exported weights pair (name or stem) instead of a checkpoint: its safetensors and "
        "JSON stay as they are, the ONNX is written again from the current model code",
    )
    e.add_argument(
        "--out",
        help="output stem (default: weights/fusion; with --from-weights, the source pair itself)",
    )
    e.add_argument(
        "--preprocess-config", type=Path, help="override the PreprocessConfig stored in the checkpoint"
    )
    e.add_argument("--no-onnx", action="store_true")
    e.add_argument(
        "--manifest", type=Path,
        help="detectors with a decision threshold (mds): choose it on this cache (default: the run's)",
    )  # fmt: skip
    e.add_argument(
        "--split",
        default="val",
        help="the manifest split the threshold and probability mapping are fitted on",
    )
    e.add_argument(
        "--no-calibration",
        action="store_true",
        help="store no probability mapping (default: fitted on --split, safe across its sources)",
    )
    e.add_argument(
        "--labels",
        type=Path,
        help="labels CSV with a 'source' column: the sources the mapping is safe across",
    )
    e.set_defaults(func=cmd_export)

    c = sub.add_parser(
        "calibrate",
        help="fit exported weights' probability mapping on a cache's labelled split; rewrites their JSON",
    )
    c.add_argument("--weights", required=True, help="exported weights (name or path stem)")
    c.add_argument(
        "--manifest", type=Path, required=True, help="preprocessing manifest with real and fake videos"
    )
    c.add_argument("--split", default="val", help="the manifest split to fit on (never the evaluation set)")
    c.add_argument(
        "--labels",
        type=Path,
        help="labels CSV with a 'source' column (train footage-labels): the sources to be safe across",
    )
    c.add_argument(
        "--objective",
        choices=("worst", "mean"),
        default="worst",
        help="minimise the worst source's balanced log loss, or the sources' mean (default: %(default)s)",
    )
    c.add_argument("--remove", action="store_true", help="remove the mapping instead (raw probabilities)")
    c.set_defaults(func=cmd_calibrate)

    n = sub.add_parser(
        "ensemble",
        help="exported detectors -> an ensemble JSON: member weights and calibration fitted on a split",
    )
    n.add_argument(
        "--members",
        required=True,
        help="comma-separated weights (names or path stems); a+b ties two into one member, the mean "
        "of their log-odds (e.g. two seeds of one recipe)",
    )
    n.add_argument(
        "--manifest",
        type=Path,
        required=True,
        action="append",
        help="a cache every member can read, with real and fake videos; repeat it to add another "
        "(e.g. the re-packaged reals of `train repackage-reals`)",
    )
    n.add_argument("--split", default="val", help="the manifest split to fit on (never the evaluation set)")
    n.add_argument(
        "--labels",
        type=Path,
        action="append",
        help="labels CSV with a 'source' column: the sources to be safe across (repeatable)",
    )
    n.add_argument(
        "--probe",
        type=Path,
        action="append",
        help="a cache of real videos the fit never reads, scored with the result (e.g. the validation "
        "reals re-packaged by `train repackage-reals`): its AUC against the fit's fakes, its log loss; repeatable",
    )
    n.add_argument("--preprocess-from", help="the member whose preprocessing the ensemble runs for all")
    n.add_argument(
        "--preprocess-config", type=Path, help="or a PreprocessConfig JSON: the ensemble's samples"
    )
    n.add_argument(
        "--names",
        help="comma-separated member names for the members CSV (one per weights, a tied group's each)",
    )
    n.add_argument(
        "--objective",
        choices=("worst", "mean", "auto"),
        default="worst",
        help="what weights and mapping minimise over sources: the worst one's balanced log loss, their"
        " mean, or auto: the one whose worst source fares better when each is left out (default: %(default)s)",
    )
    n.add_argument(
        "--held-out",
        action="store_true",
        help="also refit leaving each source out and report how the left-out sources fare (auto does)",
    )
    n.add_argument(
        "--out", type=Path, required=True, help="the ensemble JSON to write (e.g. weights/default.json)"
    )
    n.set_defaults(func=cmd_ensemble)

    v = sub.add_parser("eval", help="metrics report (JSON + ROC PNG)")
    v.add_argument("--submission", type=Path, help="CSV filename,probability")
    v.add_argument("--labels", type=Path, help="labels CSV or DFDC metadata.json")
    v.add_argument("--manifest", type=Path, help="preprocessing manifest to score with a model")
    v.add_argument(
        "--per-second",
        type=Path,
        help="with --submission: per-second CSV (filename,track,second,score) for localisation "
        "metrics against the labels' fake_start,fake_end",
    )
    v.add_argument("--checkpoint", type=Path)
    v.add_argument(
        "--weights",
        help="exported weights (name or path), or an ensemble: a,b or its JSON (as run.sh --weights)",
    )
    v.add_argument(
        "--split",
        help="evaluate only this split (default: all for --submission, test for --manifest; "
        "'all': every sample of the manifest, e.g. an evaluation-only set)",
    )
    v.add_argument("--val-split", default="val")
    v.add_argument(
        "--val-threshold-from",
        help="validation predictions CSV (labels from --labels, split --val-split), a report JSON, or a number",
    )
    v.add_argument("--threshold", type=float, help="fixed decision threshold")
    v.add_argument("--threshold-method", choices=("youden", "eer"), default="youden")
    v.add_argument(
        "--resamples",
        type=int,
        default=2000,
        help="bootstrap resamples for the 95%% intervals of AUC and log loss (seeded; 0: none; default %(default)s)",
    )
    v.add_argument(
        "--out",
        type=Path,
        default=Path("eval_report"),
        help="folder for report.json, roc.png and reliability.png",
    )
    v.add_argument(
        "--raw",
        action="store_true",
        help="with --weights: the detector's own probabilities, without its calibration",
    )
    v.add_argument(
        "--by-source", type=Path, metavar="LABELS",
        help="also report each source's figures (its fakes' AUC against all reals; each real source's "
        "mean score) from this labels CSV's 'source' column (train footage-labels writes one)",
    )  # fmt: skip
    v.set_defaults(func=cmd_eval)

    pr = sub.add_parser(
        "paired",
        help="two detectors' `train eval` reports on one set: A − B with paired-bootstrap intervals",
        description="A − B in AUC, log loss, balanced log loss and each fake kind's AUC against the "
        "reals, both scored on the same resampled videos (reals and each kind of fake resampled apart). "
        "A REPORT is [NAME=]PATH as for `train compare`; both must have scored the same videos.",
    )
    pr.add_argument("a", metavar="A")
    pr.add_argument("b", metavar="B")
    pr.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default %(default)s)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--out", type=Path, help="also write the differences as JSON")
    pr.set_defaults(func=cmd_paired)

    m = sub.add_parser(
        "compare",
        help="the detectors table (Markdown + CSV) from `train eval` reports",
        description="One row per evaluated report: AUC, AP, log loss, each fake category's AUC "
        "against all reals, and with --val the validation report's AUC (LOGO AUC). A REPORT is "
        "[NAME=]PATH: a report.json or the folder `train eval --out` wrote; NAME defaults to the "
        "weights' name in the report's title, so a detector's evaluation and validation reports pair.",
    )
    m.add_argument("reports", nargs="+", metavar="REPORT", help="evaluation reports, one row each")
    m.add_argument(
        "--val", nargs="+", metavar="REPORT", help="validation reports: their AUC is the LOGO AUC column"
    )
    m.add_argument(
        "--columns",
        help="comma-separated columns (default: AUC,AP,log loss, each fake category, LOGO AUC); also "
        "videos, fakes, EER, accuracy, Brier, ECE, balanced log loss",
    )
    m.add_argument("--sort", help="a column to sort by, best first (default: the reports' order)")
    m.add_argument("--bold-best", action="store_true", help="Markdown: each metric's best value in bold")
    m.add_argument("--out-md", type=Path, help="write the Markdown table here (it is printed too)")
    m.add_argument("--out-csv", type=Path, help="write the table as CSV here (full precision)")
    m.set_defaults(func=cmd_compare)

    y = sub.add_parser("sync-pretrain", help="self-supervised SyncNet training on unlabelled real videos")
    y.add_argument(
        "videos",
        type=Path,
        help="folder of real talking-face videos: SPEAKER/CLIP.mp4 or SPEAKER/VIDEO/CLIP.mp4 "
        "(LRS2, LRS3, VoxCeleb2; split by speaker), or the clips themselves",
    )
    y.add_argument("--out", default="weights/syncnet", help="output weights stem")
    y.add_argument("--steps", type=int, default=300)
    y.add_argument(
        "--epochs", type=int, help="train this many epochs instead of --steps (an epoch: one window per clip)"
    )
    y.add_argument("--batch-size", type=int, default=8)
    y.add_argument("--lr", type=float, default=1e-4)
    y.add_argument(
        "--eval-clips",
        type=int,
        default=4,
        help="clips of held-out speakers (whole speakers held out) to measure shift recovery",
    )
    y.add_argument("--init", help="start from these SyncNet weights (ours or syncnet_v2.model)")
    y.add_argument("--max-frames", type=int, default=100, help="frames kept per clip (its main face track)")
    y.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    y.add_argument(
        "--amp", action="store_true", help="mixed precision: fp16 + gradient scaling on CUDA, bf16 on CPU"
    )
    y.add_argument(
        "--checkpoint",
        type=Path,
        help=f"training state written after every epoch (default: the --resume file, else {SYNC_PRETRAIN_CHECKPOINT})",
    )
    y.add_argument("--resume", type=Path, help="continue from this checkpoint (same videos and options)")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--quiet", action="store_true")
    y.set_defaults(func=cmd_sync_pretrain)

    t = sub.add_parser("sync-train", help="train the shipped lower-face sync model (models.syncnet_mouth)")
    t.add_argument("train", type=Path, help="training set with MANIFEST.tsv (split by its group column)")
    t.add_argument("--cache", type=Path, default=Path("data/sync_cache"), help="extracted crops + audio")
    t.add_argument("--sources", default="real/,real_mouth/", help="manifest path prefixes to train on")
    t.add_argument("--out", default="weights/syncnet", help="output weights stem (+ .json, .onnx)")
    t.add_argument("--steps", type=int, default=SYNC_STEPS)
    t.add_argument("--eval-every", type=int, default=100, help="held-out shift recovery every N steps")
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    t.add_argument("--tensorboard", type=Path, help="TensorBoard log folder")
    t.add_argument(
        "--cached-only", action="store_true", help="train on what the cache holds; extract nothing"
    )
    t.add_argument("--init", help="start from these syncnet_mouth weights")
    t.add_argument(
        "--exclude-labels",
        type=Path,
        help="a detector's labels CSV (train footage-labels): leave out its --exclude-split clips entirely",
    )
    t.add_argument("--exclude-split", default="val", help="the split --exclude-labels leaves out")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument(
        "--fake-weight", type=float, default=0.5, help="sampling multiplier of fake/ (generated) clips"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_sync_train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from train.export import ExportError
    from weights.store import WeightsError

    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ExportError, WeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
