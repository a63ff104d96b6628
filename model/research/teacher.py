"""A strong FER teacher trained where a GPU is available, and the soft labels it leaves behind for the CPU
students (``emotion-edge-train --teacher-scores FILE``). Research code: PyTorch is no runtime or test
dependency of emotion-edge, and nothing here is installed.

    # here, once: FER2013 + FER+ votes as uint8 arrays, small enough to travel to the GPU machine (< 64 MiB)
    python -m emotion_model.research.teacher export --data ../shared/data/fer2013plus.csv.gz --out model/runs/fer.xz
    # on the GPU machine (one command): train, select on PublicTest, score every split
    python -m emotion_model.research.teacher train --data model/runs/fer.xz --out $OUT
    # here: distil a shipped model from the teacher's scores
    emotion-edge-train --recipe accurate_cam --teacher-scores $OUT/scores.npz --out model/runs/distil ...

The teacher: a ResNet-18 (timm when present, else torchvision) on 1-channel faces upsampled from 48 to
``--size`` px, trained from scratch (no weights can be downloaded there) on the FER2013 label mixed with the
FER+ vote distribution, with flips, affine jitter, random erasing and the camera degradations of
``model.camera`` (blur, motion, resolution, exposure, noise; JPEG only in the fixed evaluation suite), all on
the GPU in bf16 autocast. The epoch kept is the best by the card's fixed PublicTest criterion: the mean of
FER2013-label and FER+-majority accuracy. Its flip-averaged scores are written for Training, PublicTest and
PrivateTest, and for PublicTest and PrivateTest under each condition of ``model.camera.CONDITIONS``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import math
import sys
import time
from pathlib import Path

import numpy as np

SPLITS = ("Training", "PublicTest", "PrivateTest")
CONDITIONS = ("clean", "blur σ1", "motion 3px", "noise σ10", "JPEG q30", "seen at 32px", "low light")
FORMAT = "emotion-edge fer export 1"


# --- the data export ---------------------------------------------------------------------------------------

def pixels_digest(x: np.ndarray) -> str:
    """Names a set of faces: the distillation checks that the teacher scored the very faces it trains on."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.uint8).tobytes()).hexdigest()[:16]


def export(data: str | None, out: Path, limit: int | None = None) -> dict:
    """The three splits as uint8 faces, labels and FER+ votes, each row differenced from its left neighbour
    (PNG's "Sub" filter) and LZMA-compressed: 61 MB for the 35,887 faces (zlib alone: 78 MB), under the
    device's 64 MiB carry limit."""
    from emotion_model import data as fer

    d = fer.load(data, splits=SPLITS, limit=limit)
    arrays, meta = {}, {"format": FORMAT, "splits": {}}
    for s in SPLITS:
        sp = d[s]
        if sp.votes is None:
            raise SystemExit("export: the data has no FER+ votes (use fer2013plus.csv.gz)")
        arrays[f"{s}_sub"] = np.diff(sp.x.astype(np.int16), axis=2, prepend=0).astype(np.uint8)
        arrays[f"{s}_y"] = sp.y.astype(np.int8)
        arrays[f"{s}_votes"] = np.clip(np.round(sp.votes), 0, 255).astype(np.uint8)
        meta["splits"][s] = {"rows": len(sp), "pixels": pixels_digest(sp.x)}
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(lzma.compress(buf.getvalue(), preset=6))
    tmp.replace(out)
    return meta


def load_export(path: Path) -> tuple[dict, dict]:
    """{split: (x uint8 [N,48,48], y int64 [N], votes float32 [N,7])} and the export's header; the pixels are
    checked against the digests written beside them."""
    try:
        z = np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())))
        meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, lzma.LZMAError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not an export of this script ({e})") from None
    if meta.get("format") != FORMAT:
        raise SystemExit(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    out = {}
    for s in SPLITS:
        x = np.cumsum(z[f"{s}_sub"].astype(np.uint8), axis=2, dtype=np.uint8)  # wraps mod 256, undoing the Sub
        if pixels_digest(x) != meta["splits"][s]["pixels"]:
            raise SystemExit(f"{path}: the {s} faces do not match their digest (a damaged copy)")
        out[s] = (x, z[f"{s}_y"].astype(np.int64), z[f"{s}_votes"].astype(np.float32))
    return out, meta


# --- the camera, in torch ----------------------------------------------------------------------------------

def _gauss_kernels(torch, sigmas, size=9):
    r = torch.arange(size, device=sigmas.device, dtype=torch.float32) - size // 2
    k1 = torch.exp(-(r[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    return k1[:, :, None] * k1[:, None, :]  # [N, size, size]


def _per_sample_conv(torch, F, x, kernels):
    """x [N,1,H,W], kernels [N,k,k]: each face with its own kernel (grouped convolution), edges replicated."""
    n, k = x.shape[0], kernels.shape[-1]
    xp = F.pad(x, (k // 2,) * 4, mode="replicate").reshape(1, n, x.shape[2] + k - 1, x.shape[3] + k - 1)
    return F.conv2d(xp, kernels[:, None], groups=n).reshape(n, 1, x.shape[2], x.shape[3])


def _motion_kernels(torch, F, lengths, angles, size=9):
    """A line of ``length`` pixels through the centre at ``angle`` degrees, as model.camera.motion_blur."""
    n, c = lengths.shape[0], size // 2
    idx = torch.arange(size, device=lengths.device)
    k = torch.zeros(n, 1, size, size, device=lengths.device)
    k[:, 0, c, :] = ((idx[None] - c).abs() <= (lengths // 2)[:, None]).float()
    theta = angles.float() * math.pi / 180
    zero = torch.zeros_like(theta)
    rot = torch.stack([torch.stack([theta.cos(), -theta.sin(), zero], 1),
                       torch.stack([theta.sin(), theta.cos(), zero], 1)], 1)
    k = F.grid_sample(k, F.affine_grid(rot, (n, 1, size, size), align_corners=False), align_corners=False)[:, 0]
    return k / k.sum((1, 2), keepdim=True).clamp_min(1e-6)


def degrade(torch, F, x, gen):
    """model.camera.degrade on a batch of [N,1,48,48] float faces in 0..255, on their device: per face, in
    the order light meets a camera, blur or motion, the sensor's resolution, exposure, noise (no JPEG)."""
    n, dev = x.shape[0], x.device

    def pick(p):
        return torch.rand(n, device=dev, generator=gen) < p

    blur = pick(0.25)
    if blur.any():
        sig = torch.empty(int(blur.sum()), device=dev).uniform_(0.4, 1.6, generator=gen)
        x[blur] = _per_sample_conv(torch, F, x[blur], _gauss_kernels(torch, sig))
    motion = ~blur & pick(0.15)
    if motion.any():
        m = int(motion.sum())
        lengths = torch.tensor([3, 5], device=dev)[torch.randint(0, 2, (m,), device=dev, generator=gen)]
        angles = torch.tensor([0.0, 45.0, 90.0, 135.0], device=dev)[torch.randint(0, 4, (m,), device=dev, generator=gen)]
        x[motion] = _per_sample_conv(torch, F, x[motion], _motion_kernels(torch, F, lengths, angles))
    small = pick(0.3)
    if small.any():
        side = int(torch.randint(20, 45, (1,), device=dev, generator=gen))  # one size per batch: one resize
        x[small] = F.interpolate(F.interpolate(x[small], size=(side, side), mode="area"), size=x.shape[2:],
                                 mode="bilinear", align_corners=False)
    expo = pick(0.3)
    if expo.any():
        e = int(expo.sum())
        dark = torch.rand(e, device=dev, generator=gen) < 0.65
        gain = torch.where(dark, torch.empty(e, device=dev).uniform_(0.2, 0.6, generator=gen),
                           torch.empty(e, device=dev).uniform_(1.3, 2.2, generator=gen))
        x[expo] = (x[expo] * gain[:, None, None, None]).clamp(0, 255).round()
    noisy = pick(0.4)
    if noisy.any():
        sig = torch.empty(int(noisy.sum()), 1, 1, 1, device=dev).uniform_(2.0, 12.0, generator=gen)
        x[noisy] = (x[noisy] + torch.randn(x[noisy].shape, device=dev, generator=gen) * sig).clamp(0, 255).round()
    return x


def condition(torch, F, x, name: str, seed: int = 0):
    """model.camera.CONDITIONS on [N,1,48,48] float faces in 0..255 (JPEG through torchvision on the CPU)."""
    n, dev = x.shape[0], x.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    if name == "clean":
        return x
    if name == "blur σ1":
        return _per_sample_conv(torch, F, x, _gauss_kernels(torch, torch.ones(n, device=dev)))
    if name == "motion 3px":
        return _per_sample_conv(torch, F, x, _motion_kernels(torch, F, torch.full((n,), 3, device=dev),
                                                             torch.zeros(n, device=dev)))
    if name == "noise σ10":
        return (x + torch.randn(x.shape, device=dev, generator=gen) * 10).clamp(0, 255).round()
    if name == "seen at 32px":
        return F.interpolate(F.interpolate(x, size=(32, 32), mode="area"), size=x.shape[2:], mode="bilinear",
                             align_corners=False)
    if name == "low light":
        return ((x * 0.3).clamp(0, 255).round() + torch.randn(x.shape, device=dev, generator=gen) * 5).clamp(0, 255).round()
    if name == "JPEG q30":
        from torchvision.io import decode_jpeg, encode_jpeg

        cpu = x.round().clamp(0, 255).to(torch.uint8).cpu()
        return torch.stack([decode_jpeg(encode_jpeg(f, quality=30)) for f in cpu]).to(dev, torch.float32)
    raise KeyError(name)


# --- the network -------------------------------------------------------------------------------------------

def make_net(arch: str, classes: int = 7):
    """timm's network of that name (1 input channel, from scratch), else torchvision's; "tiny" is a small
    plain-torch CNN for the CPU test."""
    if arch == "tiny":
        import torch.nn as nn

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

        return nn.Sequential(block(1, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(64, classes))
    try:
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=classes, in_chans=1)
    except ImportError:
        import torch
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
        net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        return net


def targets(torch, y, votes, ferplus: float, smoothing: float):
    """(1 - ferplus) * one-hot FER2013 label + ferplus * FER+ vote distribution (a face without a vote for
    the seven classes keeps its label), then label smoothing."""
    onehot = torch.nn.functional.one_hot(y, 7).float()
    total = votes.sum(1, keepdim=True)
    dist = torch.where(total > 0, votes / total.clamp_min(1), onehot)
    t = (1 - ferplus) * onehot + ferplus * dist
    return t * (1 - smoothing) + smoothing / 7


def majority(votes):
    import torch

    return torch.where(votes.sum(1) > 0, votes.argmax(1), torch.full_like(votes[:, 0], -1, dtype=torch.long))


def train(args) -> dict:
    import torch
    import torch.nn.functional as F

    dev = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    torch.manual_seed(args.seed)
    data, meta = load_export(Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def to_dev(x):
        return torch.from_numpy(x).to(dev)

    tr_x = to_dev(data["Training"][0]).float()[:, None]
    tr_y, tr_v = to_dev(data["Training"][1]), to_dev(data["Training"][2])
    va_x = to_dev(data["PublicTest"][0]).float()[:, None]
    va_y, va_maj = to_dev(data["PublicTest"][1]), majority(to_dev(data["PublicTest"][2]))
    net = make_net(args.arch).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(tr_x) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.15)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def prep(x):  # 0..255 -> the network's input: upsampled, standardised per face
        x = F.interpolate(x, size=(args.size, args.size), mode="bilinear", align_corners=False)
        m, s = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True).clamp_min(1.0)
        return ((x - m) / s).contiguous(memory_format=torch.channels_last)

    def augment(x):
        n = x.shape[0]
        x = degrade(torch, F, x.clone(), gen)
        flip = torch.rand(n, device=dev, generator=gen) < 0.5
        x[flip] = x[flip].flip(3)
        ang = (torch.rand(n, device=dev, generator=gen) - 0.5) * 2 * math.radians(15)
        sc = 1 + (torch.rand(n, device=dev, generator=gen) - 0.5) * 0.3
        tx, ty = ((torch.rand(2, n, device=dev, generator=gen) - 0.5) * 0.2)
        rot = torch.stack([torch.stack([ang.cos() / sc, -ang.sin() / sc, tx], 1),
                           torch.stack([ang.sin() / sc, ang.cos() / sc, ty], 1)], 1)
        x = F.grid_sample(x, F.affine_grid(rot, x.shape, align_corners=False), padding_mode="border",
                          align_corners=False)
        c = (1 + (torch.rand(n, 1, 1, 1, device=dev, generator=gen) - 0.5) * 0.6)
        b = (torch.rand(n, 1, 1, 1, device=dev, generator=gen) - 0.5) * 60
        x = ((x - 128) * c + 128 + b).clamp(0, 255)
        erase = torch.rand(n, device=dev, generator=gen) < 0.3  # random erasing: a 12-20 px square
        if erase.any():
            e = int(erase.sum())
            side = int(torch.randint(12, 21, (1,), device=dev, generator=gen))
            cx, cy = torch.randint(0, 48 - side, (2, e), device=dev, generator=gen)
            idx = torch.arange(48, device=dev)
            mx = (idx[None] >= cx[:, None]) & (idx[None] < cx[:, None] + side)
            my = (idx[None] >= cy[:, None]) & (idx[None] < cy[:, None] + side)
            mask = (my[:, :, None] & mx[:, None, :])[:, None]
            x[erase] = torch.where(mask, torch.full_like(x[erase], 128.0), x[erase])
        return x

    @torch.no_grad()
    def scores(x):
        net.eval()
        outs = []
        for i in range(0, len(x), 1024):
            xb = x[i:i + 1024]
            with torch.autocast(**amp):
                p = net(prep(xb)).float().softmax(1) + net(prep(xb.flip(3))).float().softmax(1)
            outs.append(p / 2)
        net.train()
        return torch.cat(outs)

    def criterion(p, y, maj):
        pred = p.argmax(1)
        fer_acc = (pred == y).float().mean().item()
        has = maj >= 0
        plus_acc = (pred[has] == maj[has]).float().mean().item() if has.any() else 0.0
        return fer_acc, plus_acc, (fer_acc + plus_acc) / 2

    history, best, best_state = [], -1.0, None
    t_start = time.monotonic()
    gpu = torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'
    print(f"teacher: {args.arch} at {args.size} px on {dev} ({gpu}), "
          f"{len(tr_x)} Training faces, {args.epochs} epochs of {steps_per_epoch} steps", flush=True)
    for epoch in range(args.epochs):
        t0 = time.monotonic()
        perm = torch.randperm(len(tr_x), device=dev, generator=gen)
        run_loss = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            xb = augment(tr_x[idx])
            tb = targets(torch, tr_y[idx], tr_v[idx], args.ferplus, args.smoothing)
            with torch.autocast(**amp):
                logits = net(prep(xb))
            loss = -(tb * logits.float().log_softmax(1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() if i % 20 == 0 else 0.0
        fer_acc, plus_acc, crit = criterion(scores(va_x), va_y, va_maj)
        history.append({"epoch": epoch + 1, "publictest_fer2013": fer_acc, "publictest_ferplus": plus_acc,
                        "criterion": crit, "seconds": round(time.monotonic() - t0, 1)})
        mark = ""
        if crit > best:
            best, mark = crit, " *"
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        print(f"epoch {epoch + 1:3d}/{args.epochs}  PublicTest FER2013 {fer_acc:.4f} FER+ {plus_acc:.4f} "
              f"criterion {crit:.4f}  {time.monotonic() - t0:5.1f}s{mark}", flush=True)
        if args.budget_s and time.monotonic() - t_start > args.budget_s:
            print(f"stopping after epoch {epoch + 1}: the time budget of {args.budget_s:g} s is spent", flush=True)
            break
    net.load_state_dict(best_state)

    result = {"arch": args.arch, "size": args.size, "epochs_run": len(history), "device": str(dev),
              "best_epoch": max(history, key=lambda h: h["criterion"])["epoch"], "history": history,
              "criterion": "mean of FER2013 and FER+-majority accuracy on PublicTest (float, flip-averaged)",
              "splits": {}}
    arrays = {"labels": np.array(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])}
    for s in SPLITS:
        x = to_dev(data[s][0]).float()[:, None]
        p = scores(x)
        arrays[f"{s}/clean"] = p.cpu().numpy().astype(np.float16)
        fer_acc, plus_acc, crit = criterion(p, to_dev(data[s][1]), majority(to_dev(data[s][2])))
        result["splits"][s] = {"rows": len(x), "pixels": meta["splits"][s]["pixels"],
                               "fer2013": round(fer_acc, 4), "ferplus": round(plus_acc, 4)}
        if s != "Training":
            cams = {}
            for c in CONDITIONS[1:]:
                try:
                    pc = scores(condition(torch, F, x, c, seed=1))
                except ImportError:  # no torchvision for JPEG
                    continue
                arrays[f"{s}/{c}"] = pc.cpu().numpy().astype(np.float16)
                cams[c] = round(criterion(pc, to_dev(data[s][1]), majority(to_dev(data[s][2])))[0], 4)
            result["splits"][s]["camera_fer2013"] = cams
    np.savez_compressed(out / "scores.npz", meta=np.frombuffer(json.dumps(result).encode(), np.uint8), **arrays)
    (out / "teacher.json").write_text(json.dumps(result, indent=1) + "\n")
    priv = result["splits"]["PrivateTest"]
    print(f"teacher: best epoch {result['best_epoch']}, PrivateTest FER2013 {priv['fer2013']:.4f}, FER+ majority "
          f"{priv['ferplus']:.4f}; scores in {out / 'scores.npz'}", flush=True)
    return result


def read_scores(path: Path, split: str = "Training", condition_name: str = "clean") -> tuple[np.ndarray, dict]:
    """The teacher's flip-averaged scores [N,7] for one split (and camera condition), with the file's
    header; the header's digest of the faces is what the distillation checks against its own data."""
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            p = z[f"{split}/{condition_name}"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"--teacher-scores {path}: not a scores file of model/research/teacher.py ({e})") from None
    return p, meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="teacher", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="FER2013 + FER+ votes as a compact file for the GPU machine")
    e.add_argument("--data", help="fer2013plus.csv.gz (default: ../shared/data)")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--limit", type=int, help="at most this many rows per split (tests)")
    t = sub.add_parser("train", help="train the teacher and write its soft labels")
    t.add_argument("--data", required=True, help="the export")
    t.add_argument("--out", required=True, help="folder for scores.npz and teacher.json")
    t.add_argument("--arch", default="resnet18")
    t.add_argument("--size", type=int, default=112, help="input side in pixels, upsampled from 48")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--ferplus", type=float, default=0.5, help="weight of the FER+ vote distribution in the targets")
    t.add_argument("--smoothing", type=float, default=0.05)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--budget-s", type=float, default=0, help="stop after the epoch that passes this many seconds")
    t.add_argument("--device", choices=("auto", "cpu"), default="auto")
    args = p.parse_args(argv)
    if args.cmd == "export":
        t0 = time.monotonic()
        meta = export(args.data, args.out, args.limit)
        rows = sum(v["rows"] for v in meta["splits"].values())
        print(f"export: {rows} faces in {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, "
              f"{time.monotonic() - t0:.0f} s)")
        return 0
    for name, v, lo, hi in (("--epochs", args.epochs, 1, 1000), ("--size", args.size, 32, 512),
                            ("--batch", args.batch, 2, 8192)):
        if not lo <= v <= hi:
            p.error(f"{name} must be between {lo} and {hi}, not {v}")
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
