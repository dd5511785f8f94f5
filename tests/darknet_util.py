"""Darknet test helpers: random ``.weights`` files in darknet's binary layout.

Written from darknet's format, independent of ``trtedge.engines.darknet``: a
minimal cfg reader that only tracks channel counts (enough to size each
convolution's weights), random per-layer arrays, and a writer for the file:
int32 major, minor, revision; ``seen`` as int64 when major*10+minor >= 2 and
both < 1000, else int32; then per convolution biases (beta) [filters], and
with batch norm scales (gamma), rolling mean, rolling variance [filters]
each; then weights [filters, in/groups, size, size]; all float32.
"""

import struct

import numpy as np


def sections(path):
    """[(type, {key: value})] for every section, [net] first; values are strings."""
    out = []
    with open(path) as f:
        for raw in f:
            line = "".join(raw.split("#", 1)[0].split(";", 1)[0].split())
            if not line:
                continue
            if line.startswith("["):
                out.append((line[1:-1], {}))
            else:
                key, _, value = line.partition("=")
                out[-1][1][key] = value
    return out


def conv_layers(path):
    """Per [convolutional] section, in order: filters, in_channels, size, groups, bn."""
    secs = sections(path)
    channels = [int(secs[0][1].get("channels", 3))]  # channels[i + 1] = output of layer i
    convs = []
    for i, (kind, opts) in enumerate(secs[1:]):
        prev = channels[-1]
        if kind == "convolutional":
            conv = dict(filters=int(opts.get("filters", 1)), in_channels=prev, size=int(opts.get("size", 1)),
                        groups=int(opts.get("groups", 1)), bn=opts.get("batch_normalize", "0") == "1")
            convs.append(conv)
            out = conv["filters"]
        elif kind == "route":
            refs = [int(r) for r in opts["layers"].split(",")]
            groups = int(opts.get("groups", 1))
            out = sum(channels[(i + r if r < 0 else r) + 1] // groups for r in refs)
        else:  # shortcut, maxpool, upsample, dropout, yolo keep the channel count
            out = prev
        channels.append(out)
    return convs


def float_count(path):
    """Floats after the header of a .weights file for this cfg."""
    return sum(c["filters"] * (4 if c["bn"] else 1)
               + c["filters"] * (c["in_channels"] // c["groups"]) * c["size"] ** 2
               for c in conv_layers(path))


def random_weights(path, seed=0):
    """One dict per convolution: biases, [scales, mean, variance,] weights (float32).

    He-style weight scales and batch-norm statistics near the identity keep
    activations in a sane range through a few dozen layers.
    """
    rng = np.random.default_rng(seed)
    out = []
    for c in conv_layers(path):
        n, fan_in = c["filters"], (c["in_channels"] // c["groups"]) * c["size"] ** 2
        layer = {"biases": rng.normal(0.0, 0.1, n)}
        if c["bn"]:
            layer["scales"] = rng.uniform(0.7, 1.3, n)
            layer["mean"] = rng.normal(0.0, 0.1, n)
            layer["variance"] = rng.uniform(0.5, 1.5, n)
        shape = (n, c["in_channels"] // c["groups"], c["size"], c["size"])
        layer["weights"] = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
        out.append({k: v.astype(np.float32) for k, v in layer.items()})
    return out


def write_weights(path, layers, version=(0, 2, 5), seen=32013312):
    """Write ``layers`` (from :func:`random_weights`) as a darknet .weights file."""
    major, minor, revision = version
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    with open(str(path), "wb") as f:
        f.write(struct.pack("<3i", major, minor, revision))
        f.write(struct.pack("<q" if wide else "<i", seen))
        for layer in layers:
            for key in ("biases", "scales", "mean", "variance", "weights"):
                if key in layer:
                    f.write(layer[key].astype("<f4").tobytes())
    return str(path)
