"""Train the digits CNN whose penultimate layer is the offline FID feature extractor.

Trains on the digits training split with ±1 pixel shifts, evaluates on the test split, and
writes the weights to tuner/assets/digits_cnn.pt and the accuracy to its results file.
"""

import hashlib
import time

import harness
import torch
import torch.nn.functional as F
from claims import verdict
from harness import ROOT, Args, Result
from torch import Tensor

from tuner.data.presets import load_digits_split
from tuner.evaluation.extractors import DIGITS_WEIGHTS, DigitsCNN

NAME = "digits_classifier"  # bench/results/digits_classifier.json
TITLE = "The digits feature extractor"
TARGET_ACCURACY = 0.97


def shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts of up to one pixel in each direction (background is -1)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx, dy = torch.randint(0, 3, (2, x.shape[0]), generator=generator)
    rows = torch.arange(8)[None, :] + dy[:, None]  # (B, 8)
    cols = torch.arange(8)[None, :] + dx[:, None]
    b = torch.arange(x.shape[0])[:, None, None]
    return padded[b, 0, rows[:, :, None], cols[:, None, :]][:, None]


@torch.no_grad()
def accuracy(net: DigitsCNN, x: Tensor, y: Tensor) -> float:
    return float((net(x).argmax(1) == y).float().mean())


def train(seed: int, epochs: int, batch: int = 64, lr: float = 3e-3) -> tuple[DigitsCNN, dict]:
    """Adam with a cosine learning-rate decay; deterministic for a given seed and thread count."""
    x_train, y_train, x_test, y_test = load_digits_split()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * -(-len(x_train) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(shift(x_train[idx], gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():  # FID features with unit mean square on the training split
        net.feature_scale.fill_(1.0 / float(net.body(x_train).square().mean().sqrt()))
    info = {"seed": seed, "epochs": epochs, "n_train": len(x_train), "n_test": len(x_test),
            "params": sum(p.numel() for p in net.parameters()), "train_seconds": round(time.perf_counter() - start, 2),
            "train_accuracy": accuracy(net, x_train, y_train), "test_accuracy": accuracy(net, x_test, y_test),
            "feature_scale": float(net.feature_scale), "torch_threads": torch.get_num_threads()}  # fmt: skip
    return net, info


def summarise(result: Result) -> Result:
    r = result["raw"]
    acc = r["test_accuracy"]
    body = [f"`{result['command']}` — the digits CNN behind digits FID ({r['params']} parameters, {r['epochs']} epochs "
            f"on the {r['n_train']} training digits, {r['train_seconds']:.0f} s): test accuracy {100 * acc:.1f} % on "
            f"{r['n_test']} test digits; weights `{r.get('weights', 'not saved (--smoke)')}`."]  # fmt: skip
    claim = f"The digits CNN classifies at least {100 * TARGET_ACCURACY:.0f} % of the test digits right"  # fmt: skip
    evidence = f"{100 * acc:.1f} % of {r['n_test']} (seed {r['seed']}, one training run)"
    return harness.page(result, TITLE, body, [verdict(claim, acc >= TARGET_ACCURACY, evidence)])


def measure(args: Args) -> str | None:
    net, info = train(args.seed, args.epochs)
    if not args.smoke:  # the committed weights, only from a full run
        DIGITS_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), DIGITS_WEIGHTS)
        info["weights"] = str(DIGITS_WEIGHTS.relative_to(ROOT))
        info["weights_sha256"] = hashlib.sha256(DIGITS_WEIGHTS.read_bytes()).hexdigest()
    harness.finish(args, harness.new(args, {}, info), summarise)
    if not args.smoke and info["test_accuracy"] < TARGET_ACCURACY:
        return f"test accuracy {info['test_accuracy']:.4f} is below the required {TARGET_ACCURACY}"
    return None


if __name__ == "__main__":
    harness.main(NAME, __doc__, summarise, measure, {"epochs": 3}, seed=0, epochs=60)
