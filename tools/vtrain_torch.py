#!/usr/bin/python3
"""vtrain_torch.py - the PyTorch twin of a vtrain INI model config.

Builds an nn.Module from the same config file vtrain reads, with
  * state_dict keys and shapes exactly vtrain's parameter names
    (conv1a.weight, conv1a_bn.running_mean, conv1a_bn.num_batches_tracked,
    lstm.weight_ih_l0_reverse, attention_layer.weight, ...), and
  * a forward that computes what vtrain's vt_model_forward computes:
    input (N, C, T, H, W) -> logits (N, classes), or (N, T, classes) for
    per-frame models (single-frame, many-to-many).
It is the reference for the model parity fixture (tools/fixtures/
gen_models.py) and the way to move weights between vtrain and PyTorch.

Command line (Debian's interpreter, which has torch):

    /usr/bin/python3 tools/vtrain_torch.py configs/c3d.ini
    /usr/bin/python3 tools/vtrain_torch.py configs/c3d.ini --set fc8.units=10

prints the layer table (name, type, output shape per clip, parameters) and
"total: 78,409,573 parameters, output (101)"; --count prints the number
alone. The count is the sum of numel over parameters() (BN running
statistics and counters, which are buffers, are not counted), as vtrain's
dry-run table. Config errors exit with status 2.

As a module:

    import sys; sys.path.insert(0, "tools")
    import vtrain_torch
    m = vtrain_torch.build_model("configs/c3d_small.ini",
                                 sets=["drop6.p=0"])     # path or INI text
    logits = m(x)                        # x (N, C, T, H, W) float
    loss = m.loss(logits, labels)        # vtrain's vt_model_loss
    probs = m.probs(logits)              # vtrain's vt_model_probs
    groups = m.param_groups(lr)          # torch param groups with lr_mult
    m.load_state_dict(vtrain_torch.state_dict_from_h5(h5file["model"]))
    outs = m.forward_all(x)              # {layer name: its output}

  build_model(path_or_text, sets=(), seed=None) -> VtrainModel
      path_or_text: a file path, or the config text itself (anything with a
      newline or a '['). sets: "SECTION.KEY=VALUE" overrides, as vtrain's
      --set (an empty VALUE removes the key). seed: init seed (default
      [model] seed, default 1).
  VtrainModel attributes: name, input_shape (C, T, H, W), classes,
      per_frame, layers (list of Layer: name, type, shape per sample,
      inputs: layer indexes, -1 the model input), lr_mult {param name:
      float}, frozen {layer names}; methods param_count(), output_shape(),
      reset_parameters(seed), layer_module(name), table(). Modules are
      looked up by name at run time, so copy.deepcopy(m) and m.double()
      give independent, working copies.
  state_dict_from_h5(group) -> dict: a vtrain checkpoint's "model" group
      (or any group of name -> array) as a state_dict; num_batches_tracked
      becomes an int64 scalar whatever its stored type and shape.

Semantics mirrored from src/layers (see docs/config.md for every key):
  conv2d, maxpool2d   per frame: time is folded into the batch.
  batch_norm = 1      a sibling "<name>_bn" batch norm between the conv /
                      linear and its activation; on volumes and vectors the
                      channel axis is 1, on sequences (N, T, F) it is F
                      (BatchNorm1d on x.reshape(-1, F)).
  bias                defaults to 0 with batch_norm, else 1.
  globalpool over     all (1, 1, 1), space (T, 1, 1), time (1, H, W).
  sequence            (C, T, H, W) -> (T, C*H*W), frame features in C, H, W
                      order.
  lstm return = last  y[:, -1] (for a bidirectional LSTM that is the
                      reverse direction's output after one step).
  attention           a = softmax_t(Linear(F, 1)(h_t)); out = sum_t a_t h_t.
  dropout             inverted dropout in train mode only (vtrain draws its
                      own masks: compare with p = 0).
  concat axis         channels: C of volumes, F of sequences and vectors;
                      time: T of volumes and sequences.
  frozen = 1          the layer's parameters (its BN sibling's too) get
                      requires_grad = False; running statistics still move
                      in train mode, as in vtrain.
  init                same distributions as vtrain (default = PyTorch's
                      U(+-1/sqrt(fan_in)) for weight and bias; normal STD,
                      uniform A, xavier, kaiming, zeros with bias = bias_init;
                      xavier's fan_out divides by groups as vtrain's does),
                      drawn from torch's RNG: the same distributions, not
                      the same numbers.
Run sections ([train], [data], [optim], [schedule]) are accepted and
ignored; an unknown section type or key is an error, as in vtrain.
"""
import math
import re
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["build_model", "parse_config", "VtrainModel", "state_dict_from_h5",
           "ConfigError"]


class ConfigError(ValueError):
    """A config problem, with FILE:LINE like vtrain's messages."""


# ==== Config language (src/io/vt_ini.h) ======================================

RUN_SECTIONS = {"model", "train", "data", "optim", "schedule"}

_COMMON = {"from": "strings", "frozen": "bool", "lr_mult": "float"}
_INIT = {"init": "string", "bias_init": "float"}
_ACT = {"activation": "string"}
_BN = {"batch_norm": "bool", "bn_momentum": "float", "bn_eps": "float"}


def _keys(*parts, **extra):
    d = {}
    for p in parts:
        d.update(p)
    d.update(extra)
    return d


# key -> value type, per layer section type (the C schemas).
LAYER_KEYS = {
    "conv3d": _keys(_ACT, _BN, _INIT, _COMMON, filters="int", size="shape3", stride="shape3",
                    pad="shape3", dilation="shape3", groups="int", bias="bool"),
    "conv2d": _keys(_ACT, _BN, _INIT, _COMMON, filters="int", size="shape2", stride="shape2",
                    pad="shape2", dilation="shape2", groups="int", bias="bool"),
    "maxpool3d": _keys(_COMMON, size="shape3", stride="shape3", pad="shape3", ceil_mode="bool"),
    "avgpool3d": _keys(_COMMON, size="shape3", stride="shape3", pad="shape3", ceil_mode="bool"),
    "maxpool2d": _keys(_COMMON, size="shape2", stride="shape2", pad="shape2", ceil_mode="bool"),
    "globalpool": _keys(_COMMON, over="string"),
    "flatten": dict(_COMMON),
    "sequence": dict(_COMMON),
    "linear": _keys(_ACT, _BN, _INIT, _COMMON, units="int", bias="bool"),
    "dropout": _keys(_COMMON, p="float"),
    "batchnorm": _keys(_COMMON, momentum="float", eps="float", affine="bool"),
    "relu": dict(_COMMON),
    "sigmoid": dict(_COMMON),
    "tanh": dict(_COMMON),
    "lstm": _keys(_COMMON, {"return": "string"}, hidden="int", layers="int",
                  bidirectional="bool"),
    "attention": _keys(_INIT, _COMMON),
    "timemean": dict(_COMMON),
    "add": dict(_COMMON),
    "concat": _keys(_COMMON, axis="string"),
}
MODEL_KEYS = {"name": "string", "input": "dims", "classes": "int", "seed": "int"}
REQUIRED = {"model": ("input", "classes"), "conv3d": ("filters", "size"),
            "conv2d": ("filters", "size"), "maxpool3d": ("size",), "avgpool3d": ("size",),
            "maxpool2d": ("size",), "linear": ("units",), "dropout": ("p",),
            "lstm": ("hidden",)}
CHOICES = {"activation": ("none", "relu", "sigmoid", "tanh"), "over": ("all", "space", "time"),
           "return": ("all", "last"), "axis": ("channels", "time")}


def _parse_int(tok):
    if not re.fullmatch(r"[+-]?\d+", tok):
        raise ValueError("expected an integer")
    return int(tok)


def _parse_value(kind, text):
    if kind == "int":
        return _parse_int(text)
    if kind == "float":
        v = float(text)  # ValueError on junk
        if not math.isfinite(v):
            raise ValueError("expected a finite number")
        return v
    if kind == "bool":
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected 1/0, true/false, yes/no or on/off")
    if kind == "string":
        return text
    if kind == "strings":
        items = [s.strip() for s in text.split(",")]
        if any(not s for s in items):
            raise ValueError("empty item in a ','-separated list")
        return items
    if kind in ("shape3", "shape2", "dims"):
        v = [_parse_int(s.strip()) for s in text.split("x")]
        want = {"shape3": (1, 3), "shape2": (1, 2)}.get(kind)
        if want and len(v) not in want:
            raise ValueError("expected %d or %d sizes joined by 'x'" % want)
        if kind != "dims" and len(v) == 1:
            v = v * want[1]
        return tuple(v)
    raise AssertionError(kind)


def _value_text(raw, comments):
    """The VALUE of 'KEY = VALUE': quotes, trailing comments (vt_ini.h)."""
    v = raw.strip(" \t")
    if v.startswith('"'):
        out, i = [], 1
        while i < len(v):
            ch = v[i]
            if ch == "\\" and i + 1 < len(v) and v[i + 1] in '"\\':
                out.append(v[i + 1])
                i += 2
                continue
            if ch == '"':
                rest = v[i + 1:].lstrip(" \t")
                if rest and not (comments and rest[0] in "#;"):
                    raise ValueError("unexpected text after the closing quote")
                return "".join(out)
            out.append(ch)
            i += 1
        raise ValueError("unterminated quoted value")
    if comments:
        for i, ch in enumerate(v):
            if ch in "#;" and (i == 0 or v[i - 1] in " \t"):
                v = v[:i]
                break
    v = v.strip(" \t")
    if not v:
        raise ValueError("missing value")
    return v


class Section:
    def __init__(self, type_, name, line):
        self.type, self.name, self.line = type_, name, line
        self.values = {}   # key -> parsed value
        self.lines = {}    # key -> line (0: override)

    def get(self, key, default=None):
        return self.values.get(key, default)

    def has(self, key):
        return key in self.values


class Config:
    def __init__(self, fname):
        self.file = fname
        self.sections = []  # file order

    def find(self, name):
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def where(self, sec, key=None):
        line = sec.lines.get(key) if key else None
        line = line if line else sec.line
        return "%s:%d" % (self.file, line) if line else self.file

    def error(self, sec, key, msg):
        what = "[%s]" % sec.type if sec.type in RUN_SECTIONS else "layer '%s'" % sec.name
        return ConfigError("%s: %s: %s" % (self.where(sec, key), what, msg))


def _key_table(type_):
    return MODEL_KEYS if type_ == "model" else LAYER_KEYS.get(type_)


def _set(cfg, sec, key, text, line, where):
    table = _key_table(sec.type)
    if table is None:   # other run sections: not the model's business
        sec.values[key] = text
        sec.lines[key] = line
        return
    if key not in table:
        raise ConfigError("%s: unknown key '%s' in [%s%s]" % (
            where, key, sec.type, "" if sec.type in RUN_SECTIONS else " " + sec.name))
    try:
        v = _parse_value(table[key], text)
        if key in CHOICES and v not in CHOICES[key]:
            raise ValueError("expected one of %s" % "|".join(CHOICES[key]))
    except ValueError as e:
        raise ConfigError("%s: bad value '%s' for key '%s': %s" % (where, text, key, e))
    sec.values[key] = v
    sec.lines[key] = line


def parse_config(text, fname="<config>", sets=()):
    """Parses INI text and applies "SECTION.KEY=VALUE" overrides."""
    cfg = Config(fname)
    cur = None
    if text.startswith("\ufeff"):
        text = text[1:]
    for ln, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r").strip(" \t")
        where = "%s:%d" % (fname, ln)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            close = line.find("]")
            if close < 0:
                raise ConfigError("%s: section header without ']'" % where)
            rest = line[close + 1:].strip(" \t")
            if rest and rest[0] not in "#;":
                raise ConfigError("%s: unexpected text after the section header" % where)
            words = line[1:close].split()
            if not 1 <= len(words) <= 2:
                raise ConfigError("%s: expected [TYPE] or [TYPE NAME]" % where)
            t = words[0]
            if t in RUN_SECTIONS:
                if len(words) == 2:
                    raise ConfigError("%s: [%s] takes no name" % (where, t))
                name = t
            elif t in LAYER_KEYS:
                if len(words) == 1:
                    raise ConfigError("%s: layer section [%s] needs a name" % (where, t))
                name = words[1]
                if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in RUN_SECTIONS:
                    raise ConfigError("%s: bad layer name '%s'" % (where, name))
            else:
                raise ConfigError("%s: unknown section type '%s'" % (where, t))
            if cfg.find(name):
                raise ConfigError("%s: duplicate section name '%s'" % (where, name))
            cur = Section(t, name, ln)
            cfg.sections.append(cur)
            continue
        if "=" not in line:
            raise ConfigError("%s: expected '[section]', 'key = value' or a comment" % where)
        key, val = line.split("=", 1)
        key = key.strip(" \t")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError("%s: bad key '%s'" % (where, key))
        if cur is None:
            raise ConfigError("%s: key '%s' before any [section]" % (where, key))
        if key in cur.values:
            raise ConfigError("%s: duplicate key '%s'" % (where, key))
        try:
            val = _value_text(val, True)
        except ValueError as e:
            raise ConfigError("%s: %s for key '%s'" % (where, e, key))
        _set(cfg, cur, key, val, ln, where)
    for arg in sets:
        eq, dot = arg.find("="), arg.find(".")
        if eq < 0 or dot < 0 or dot > eq:
            raise ConfigError("--set %s: expected SECTION.KEY=VALUE" % arg)
        sname, key = arg[:dot].strip(), arg[dot + 1:eq].strip()
        where = "--set " + arg
        sec = cfg.find(sname)
        if sec is None:
            if sname in RUN_SECTIONS:
                sec = Section(sname, sname, 0)
                cfg.sections.append(sec)
            else:
                raise ConfigError("%s: no section '%s'" % (where, sname))
        if not arg[eq + 1:].strip(" \t"):
            table = _key_table(sec.type)
            if table is not None and key not in table:
                raise ConfigError("%s: unknown key '%s'" % (where, key))
            sec.values.pop(key, None)
            sec.lines.pop(key, None)
            continue
        try:
            val = _value_text(arg[eq + 1:], False)
        except ValueError as e:
            raise ConfigError("%s: %s" % (where, e))
        _set(cfg, sec, key, val, 0, where)
    for sec in cfg.sections:
        for k in REQUIRED.get(sec.type, ()):
            if k not in sec.values:
                label = sec.type if sec.type in RUN_SECTIONS else sec.type + " " + sec.name
                raise ConfigError("%s: [%s]: missing required key '%s'" % (
                    cfg.where(sec), label, k))
    if cfg.find("model") is None:
        raise ConfigError("%s: missing required section [model]" % fname)
    return cfg


# ==== Layers ==================================================================

class Layer:
    """One layer section: wiring and per-sample output shape."""

    def __init__(self, sec, index):
        self.sec, self.index = sec, index
        self.name, self.type = sec.name, sec.type
        self.inputs = []       # layer indexes, -1 = the model input
        self.in_shapes = []    # per-sample shapes (tuples)
        self.shape = None      # per-sample output shape
        self.fn = None         # forward(list of inputs) -> tensor
        self.params = []       # (suffix, tensor) in registration order

    @property
    def ndim(self):
        return len(self.shape)


def shape_str(shape):
    """(16, 101) or (101), as vtrain's tables write shapes."""
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _conv_out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(n, k, s, p, ceil):
    out = (n + 2 * p - k + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _act_fn(name):
    return {"none": None, "relu": torch.relu, "sigmoid": torch.sigmoid,
            "tanh": torch.tanh}[name]


def _frames(x):
    """(N, C, T, H, W) -> (N*T, C, H, W)."""
    n, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w), n, t


def _unframes(y, n, t):
    """(N*T, C, H, W) -> (N, C, T, H, W)."""
    _, c, h, w = y.shape
    return y.reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)


def _bn_apply(bn, x, channel_last):
    if not channel_last:
        return bn(x)
    f = x.shape[-1]
    return bn(x.reshape(-1, f)).reshape(x.shape)


class VtrainModel(nn.Module):
    """The twin of one config; see the module docstring."""

    def __init__(self, cfg, seed=None):
        super().__init__()
        ms = cfg.find("model")
        self.cfg = cfg
        self.name = ms.get("name", "model")
        inp = ms.get("input")
        if len(inp) != 4:
            raise cfg.error(ms, "input", "expected 4 sizes CxTxHxW, got %d" % len(inp))
        if min(inp) < 1 or ms.get("classes") < 1:
            raise cfg.error(ms, "input", "sizes and classes must be > 0")
        self.input_shape = tuple(inp)
        self.classes = ms.get("classes")
        self.seed = ms.get("seed", 1) if seed is None else seed
        self.layers = []
        self.lr_mult = {}
        self.frozen = set()
        self._bn_layers = {}
        secs = [s for s in cfg.sections if s.type in LAYER_KEYS]
        if not secs:
            raise cfg.error(ms, None, "the config has no layer sections ([TYPE NAME])")
        for i, sec in enumerate(secs):
            if sec.name == "input":
                raise cfg.error(sec, None, "'input' names the model input; choose another name")
            L = Layer(sec, i)
            self._wire(L)
            getattr(self, "_build_" + sec.type)(L)
            self.layers.append(L)
            mult = float(sec.get("lr_mult", 1.0))
            frozen = bool(sec.get("frozen", False))
            if frozen:
                self.frozen.add(L.name)
            for mod_name in self._modules_of(L):
                for pn, p in getattr(self, mod_name).named_parameters(recurse=True):
                    self.lr_mult[mod_name + "." + pn] = mult
                    if frozen:
                        p.requires_grad_(False)
        last = self.layers[-1]
        if not (last.ndim in (1, 2) and last.shape[-1] == self.classes):
            raise cfg.error(last.sec, None,
                            "the last layer must output (classes) or (T, classes) with "
                            "classes = %d, but it outputs %s" % (self.classes, last.shape))
        self.per_frame = last.ndim == 2
        names = list(self.state_dict().keys())
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError("%s: duplicate parameter names %s" % (cfg.file, sorted(dup)))
        self.reset_parameters(self.seed)

    # ---- wiring ---------------------------------------------------------------
    def _wire(self, L):
        frm = L.sec.get("from")
        if frm is None:
            L.inputs = [L.index - 1]
        else:
            for name in frm:
                if name == "input":
                    L.inputs.append(-1)
                    continue
                j = next((k for k in range(L.index - 1, -1, -1)
                          if self.layers[k].name == name), None)
                if j is None:
                    raise self.cfg.error(L.sec, "from", "'%s' is not an earlier layer" % name)
                L.inputs.append(j)
        L.in_shapes = [self.input_shape if j < 0 else self.layers[j].shape for j in L.inputs]

    def _modules_of(self, L):
        return [n for n in (L.name, L.name + "_bn") if n in self._modules]

    def _add(self, name, module, L):
        if name in self._modules or hasattr(self, name):
            raise self.cfg.error(L.sec, None, "name '%s' clashes with another layer or a "
                                 "module attribute" % name)
        self.add_module(name, module)

    def _single(self, L, rank=None, what=""):
        if len(L.inputs) != 1:
            raise self.cfg.error(L.sec, "from", "takes one input, got %d" % len(L.inputs))
        s = L.in_shapes[0]
        if rank is not None and len(s) not in (rank if isinstance(rank, tuple) else (rank,)):
            raise self.cfg.error(L.sec, "from", "needs %s input, got %s" % (what, s))
        return s

    def _init_spec(self, L):
        s = L.sec.get("init", "default").split()
        kind = s[0] if s else ""
        kinds = {"default": 0, "normal": 1, "uniform": 1, "xavier": 0, "kaiming": 0, "zeros": 0}
        if kind not in kinds or len(s) != 1 + kinds[kind]:
            raise self.cfg.error(L.sec, "init", "bad init '%s'" % L.sec.get("init"))
        a = float(s[1]) if kinds[kind] else 0.0
        if kinds[kind] and not (a > 0 and math.isfinite(a)):
            raise self.cfg.error(L.sec, "init", "'%s' needs one positive number" % kind)
        if kind == "default" and L.sec.has("bias_init"):
            raise self.cfg.error(L.sec, "bias_init", "bias_init needs a non-default init")
        return kind, a, float(L.sec.get("bias_init", 0.0))

    def _fused_bn(self, L, channels, volume):
        if not L.sec.get("batch_norm", False):
            return None
        mom = L.sec.get("bn_momentum", 0.1)
        eps = L.sec.get("bn_eps", 1e-5)
        if not (0 <= mom < 1) or not eps > 0:
            raise self.cfg.error(L.sec, "bn_momentum", "bad batch norm momentum / eps")
        bn = (nn.BatchNorm3d if volume else nn.BatchNorm1d)(channels, eps=eps, momentum=mom)
        self._add(L.name + "_bn", bn, L)
        return bn

    # ---- volume layers --------------------------------------------------------
    def _build_conv(self, L, is3d):
        s = self._single(L, 4, "a volume (C, T, H, W)")
        sec = L.sec
        filters = sec.get("filters")
        if is3d:
            k, st = sec.get("size"), sec.get("stride", (1, 1, 1))
            pd, dl = sec.get("pad", (0, 0, 0)), sec.get("dilation", (1, 1, 1))
        else:
            k = (1,) + sec.get("size")
            st = (1,) + sec.get("stride", (1, 1))
            pd = (0,) + sec.get("pad", (0, 0))
            dl = (1,) + sec.get("dilation", (1, 1))
        groups = sec.get("groups", 1)
        if min(k + st + dl) < 1 or min(pd) < 0 or filters < 1 or groups < 1:
            raise self.cfg.error(sec, "size", "sizes must be positive")
        if s[0] % groups or filters % groups:
            raise self.cfg.error(sec, "groups", "groups = %d must divide the input channels "
                                 "(%d) and filters (%d)" % (groups, s[0], filters))
        out = [_conv_out(s[d + 1], k[d], st[d], pd[d], dl[d]) for d in range(3)]
        if min(out) < 1:
            raise self.cfg.error(sec, "size", "kernel %s does not fit input %s" % (k, s))
        L.shape = (filters,) + tuple(out)
        bn = self._fused_bn(L, filters, True)
        bias = bool(sec.get("bias", bn is None))
        if is3d:
            conv = nn.Conv3d(s[0], filters, k, st, pd, dl, groups, bias)
        else:
            conv = nn.Conv2d(s[0], filters, k[1:], st[1:], pd[1:], dl[1:], groups, bias)
        # The C side registers NAME.weight/.bias after NAME_bn.*; the
        # registration order is not part of the contract (names are).
        self._add(L.name, conv, L)
        act = _act_fn(sec.get("activation", "none"))
        spec = self._init_spec(L)
        rf = k[0] * k[1] * k[2]
        has_bn = bn is not None

        def init(mdl, g):
            c = mdl.layer_module(L.name)
            _init_wb(spec, g, c.weight, c.bias, (s[0] // groups) * rf, filters * rf // groups)
            if has_bn:
                _init_bn(mdl.layer_module(L.name + "_bn"))
        L.init = init

        def fwd(mdl, xs):
            c, x = mdl.layer_module(L.name), xs[0]
            if is3d:
                y = c(x)
            else:
                xf, n, t = _frames(x)
                y = _unframes(c(xf), n, t)
            if has_bn:
                y = _bn_apply(mdl.layer_module(L.name + "_bn"), y, False)
            return act(y) if act else y
        L.fn = fwd

    def _build_conv3d(self, L):
        self._build_conv(L, True)

    def _build_conv2d(self, L):
        self._build_conv(L, False)

    def _build_pool(self, L, kind):
        s = self._single(L, 4, "a volume (C, T, H, W)")
        sec = L.sec
        if kind == "max2d":
            k = (1,) + sec.get("size")
            st = (1,) + sec.get("stride", k[1:])
            pd = (0,) + sec.get("pad", (0, 0))
        else:
            k = sec.get("size")
            st = sec.get("stride", k)
            pd = sec.get("pad", (0, 0, 0))
        ceil = bool(sec.get("ceil_mode", False))
        for d in range(3):
            if 2 * pd[d] > k[d]:
                raise self.cfg.error(sec, "pad", "padding %d is more than half the window %d"
                                     % (pd[d], k[d]))
        out = [_pool_out(s[d + 1], k[d], st[d], pd[d], ceil) for d in range(3)]
        if min(out) < 1:
            raise self.cfg.error(sec, "size", "window %s does not fit input %s" % (k, s))
        L.shape = (s[0],) + tuple(out)
        if kind == "avg3d":
            L.fn = lambda mdl, xs: F.avg_pool3d(xs[0], k, st, pd, ceil_mode=ceil,
                                           count_include_pad=True)
        else:
            L.fn = lambda mdl, xs: F.max_pool3d(xs[0], k, st, pd, ceil_mode=ceil)

    def _build_maxpool3d(self, L):
        self._build_pool(L, "max3d")

    def _build_avgpool3d(self, L):
        self._build_pool(L, "avg3d")

    def _build_maxpool2d(self, L):
        self._build_pool(L, "max2d")

    def _build_globalpool(self, L):
        s = self._single(L, 4, "a volume (C, T, H, W)")
        over = L.sec.get("over", "all")
        o = (s[1] if over == "space" else 1, s[2] if over == "time" else 1,
             s[3] if over == "time" else 1)
        L.shape = (s[0],) + o
        L.fn = lambda mdl, xs: F.adaptive_avg_pool3d(xs[0], o)

    # ---- shape changes --------------------------------------------------------
    def _build_flatten(self, L):
        s = self._single(L)
        L.shape = (math.prod(s),)
        L.fn = lambda mdl, xs: torch.flatten(xs[0], 1)

    def _build_sequence(self, L):
        c, t, h, w = self._single(L, 4, "a volume (C, T, H, W)")
        L.shape = (t, c * h * w)
        L.fn = lambda mdl, xs: xs[0].permute(0, 2, 1, 3, 4).reshape(xs[0].shape[0], t, c * h * w)

    def _build_timemean(self, L):
        s = self._single(L, 2, "a sequence (T, F)")
        L.shape = (s[1],)
        L.fn = lambda mdl, xs: xs[0].mean(1)

    # ---- dense ----------------------------------------------------------------
    def _build_linear(self, L):
        s = self._single(L, (1, 2), "a vector (F) or a sequence (T, F)")
        units = L.sec.get("units")
        if units < 1:
            raise self.cfg.error(L.sec, "units", "must be > 0")
        L.shape = s[:-1] + (units,)
        bn = self._fused_bn(L, units, False)
        lin = nn.Linear(s[-1], units, bias=bool(L.sec.get("bias", bn is None)))
        self._add(L.name, lin, L)
        act = _act_fn(L.sec.get("activation", "none"))
        spec = self._init_spec(L)
        seq, has_bn = len(s) == 2, bn is not None

        def init(mdl, g):
            m = mdl.layer_module(L.name)
            _init_wb(spec, g, m.weight, m.bias, s[-1], units)
            if has_bn:
                _init_bn(mdl.layer_module(L.name + "_bn"))
        L.init = init

        def fwd(mdl, xs):
            y = mdl.layer_module(L.name)(xs[0])
            if has_bn:
                y = _bn_apply(mdl.layer_module(L.name + "_bn"), y, seq)
            return act(y) if act else y
        L.fn = fwd

    def _build_dropout(self, L):
        L.shape = self._single(L)
        p = L.sec.get("p")
        if not 0 <= p < 1:
            raise self.cfg.error(L.sec, "p", "must be in [0, 1)")
        L.fn = lambda mdl, xs: F.dropout(xs[0], p, mdl.training)

    def _build_batchnorm(self, L):
        s = self._single(L)
        L.shape = s
        seq = len(s) == 2
        cls = nn.BatchNorm3d if len(s) == 4 else nn.BatchNorm1d
        bn = cls(s[-1] if seq else s[0], eps=L.sec.get("eps", 1e-5),
                 momentum=L.sec.get("momentum", 0.1), affine=bool(L.sec.get("affine", True)))
        self._add(L.name, bn, L)
        L.init = lambda mdl, g: _init_bn(mdl.layer_module(L.name))
        L.fn = lambda mdl, xs: _bn_apply(mdl.layer_module(L.name), xs[0], seq)

    def _build_act(self, L, fn):
        L.shape = self._single(L)
        L.fn = lambda mdl, xs: fn(xs[0])

    def _build_relu(self, L):
        self._build_act(L, torch.relu)

    def _build_sigmoid(self, L):
        self._build_act(L, torch.sigmoid)

    def _build_tanh(self, L):
        self._build_act(L, torch.tanh)

    # ---- recurrent, attention -------------------------------------------------
    def _build_lstm(self, L):
        t, f = self._single(L, 2, "a sequence (T, F)")
        sec = L.sec
        h, layers = sec.get("hidden"), sec.get("layers", 1)
        bi = bool(sec.get("bidirectional", False))
        if h < 1 or layers < 1:
            raise self.cfg.error(sec, "hidden", "must be > 0")
        lstm = nn.LSTM(f, h, layers, batch_first=True, bidirectional=bi)
        self._add(L.name, lstm, L)
        last = sec.get("return", "all") == "last"
        d = 2 if bi else 1
        L.shape = (d * h,) if last else (t, d * h)
        bound = 1.0 / math.sqrt(h)

        def init(mdl, g):
            with torch.no_grad():
                for p in mdl.layer_module(L.name).parameters():
                    p.uniform_(-bound, bound, generator=g)
        L.init = init

        def fwd(mdl, xs):
            y, _ = mdl.layer_module(L.name)(xs[0])
            return y[:, -1] if last else y
        L.fn = fwd

    def _build_attention(self, L):
        t, f = self._single(L, 2, "a sequence (T, F)")
        lin = nn.Linear(f, 1)
        self._add(L.name, lin, L)
        spec = self._init_spec(L)
        L.shape = (f,)
        L.init = lambda mdl, g: _init_wb(spec, g, mdl.layer_module(L.name).weight,
                                         mdl.layer_module(L.name).bias, f, 1)

        def fwd(mdl, xs):
            h = xs[0]
            a = torch.softmax(mdl.layer_module(L.name)(h).squeeze(-1), dim=1)   # (N, T)
            return (a.unsqueeze(-1) * h).sum(1)
        L.fn = fwd

    # ---- graph ----------------------------------------------------------------
    def _need_two(self, L):
        if len(L.inputs) < 2 or not L.sec.has("from"):
            raise self.cfg.error(L.sec, "from", "needs at least two inputs: from = a, b")

    def _build_add(self, L):
        self._need_two(L)
        if any(s != L.in_shapes[0] for s in L.in_shapes):
            raise self.cfg.error(L.sec, "from", "inputs must have the same shape: %s"
                                 % L.in_shapes)
        L.shape = L.in_shapes[0]

        def fwd(mdl, xs):
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y
        L.fn = fwd

    def _build_concat(self, L):
        self._need_two(L)
        time = L.sec.get("axis", "channels") == "time"
        nd = len(L.in_shapes[0])
        if time and nd == 1:
            raise self.cfg.error(L.sec, "axis", "vectors have no time axis")
        ax = (1 if time else 0) if nd == 4 else (0 if time else 1) if nd == 2 else 0
        for s in L.in_shapes:
            if len(s) != nd or any(s[d] != L.in_shapes[0][d] for d in range(nd) if d != ax):
                raise self.cfg.error(L.sec, "from", "inputs must match except along the "
                                     "concat axis: %s" % L.in_shapes)
        shape = list(L.in_shapes[0])
        shape[ax] = sum(s[ax] for s in L.in_shapes)
        L.shape = tuple(shape)
        L.fn = lambda mdl, xs: torch.cat(xs, ax + 1)

    # ---- running --------------------------------------------------------------
    def reset_parameters(self, seed=None):
        """vtrain's init distributions, drawn from a torch.Generator(seed)."""
        g = torch.Generator().manual_seed(int(self.seed if seed is None else seed))
        for L in self.layers:
            init = getattr(L, "init", None)
            if init:
                init(self, g)

    def layer_module(self, name):
        """The nn.Module registered as NAME (a layer) or NAME_bn."""
        return self._modules[name]

    def forward(self, x):
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError("input %s does not match the model's (N, %s)"
                             % (tuple(x.shape), ", ".join(map(str, self.input_shape))))
        outs = []
        for L in self.layers:
            outs.append(L.fn(self, [x if j < 0 else outs[j] for j in L.inputs]))
        return outs[-1]

    def forward_all(self, x):
        """Every layer's output, by layer name (for debugging parity)."""
        outs, named = [], {}
        for L in self.layers:
            outs.append(L.fn(self, [x if j < 0 else outs[j] for j in L.inputs]))
            named[L.name] = outs[-1]
        return named

    def loss(self, logits, labels, label_smoothing=0.0):
        """vt_model_loss: cross entropy, at every frame for per-frame models."""
        if self.per_frame:
            n, t, k = logits.shape
            labels = labels.reshape(n, 1).expand(n, t).reshape(-1)
            logits = logits.reshape(n * t, k)
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

    def probs(self, logits):
        """vt_model_probs: softmax, averaged over frames for per-frame models."""
        p = torch.softmax(logits, dim=-1)
        return p.mean(1) if self.per_frame else p

    def param_count(self):
        return sum(p.numel() for p in self.parameters())

    def output_shape(self):
        return self.layers[-1].shape

    def param_groups(self, lr):
        """Trainable params grouped by lr_mult, each group lr = lr * lr_mult."""
        groups = {}
        for n, p in self.named_parameters():
            if p.requires_grad:
                groups.setdefault(self.lr_mult[n], []).append(p)
        return [{"params": ps, "lr": lr * m} for m, ps in groups.items()]

    def table(self):
        rows = [("layer", "type", "output (per clip)", "parameters")]
        rows.append(("input", "", shape_str(self.input_shape), ""))
        for L in self.layers:
            n = sum(p.numel() for m in self._modules_of(L)
                    for p in getattr(self, m).parameters())
            rows.append((L.name, L.type, shape_str(L.shape), "{:,}".format(n)))
        return "\n".join("%-16s %-11s %-22s %14s" % r for r in rows)


def _init_wb(spec, g, w, b, fan_in, fan_out):
    kind, a, bias = spec
    with torch.no_grad():
        if kind == "default":
            bound = 1.0 / math.sqrt(fan_in)
            w.uniform_(-bound, bound, generator=g)
            if b is not None:
                b.uniform_(-bound, bound, generator=g)
            return
        if kind == "normal":
            w.normal_(0.0, a, generator=g)
        elif kind == "uniform":
            w.uniform_(-a, a, generator=g)
        elif kind == "xavier":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w.uniform_(-bound, bound, generator=g)
        elif kind == "kaiming":
            w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
        else:
            w.zero_()
        if b is not None:
            b.fill_(bias)


def _init_bn(bn):
    bn.reset_parameters()   # weight 1, bias 0, mean 0, var 1, count 0


# ==== Entry points ============================================================

def _is_text(s):
    return "\n" in s or s.lstrip().startswith("[")


def build_model(path_or_text, sets=(), seed=None):
    """The twin of a config file path or config text; see the docstring."""
    if _is_text(path_or_text):
        cfg = parse_config(path_or_text, "<config>", sets)
    else:
        with open(path_or_text, encoding="utf-8") as f:
            cfg = parse_config(f.read(), path_or_text, sets)
    return VtrainModel(cfg, seed)


def state_dict_from_h5(group):
    """name -> array group (a vtrain checkpoint's "model") as a state_dict."""
    sd = {}
    for k in group.keys():
        v = torch.from_numpy(group[k][...])
        if k.endswith(".num_batches_tracked"):
            v = v.reshape(()).to(torch.int64)
        sd[k] = v
    return sd


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Build the PyTorch twin of a vtrain config "
                                 "and print its layer table and parameter count.")
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--count", action="store_true", help="print only the parameter count")
    a = ap.parse_args(argv)
    try:
        m = build_model(a.config, a.set)
    except (ConfigError, OSError) as e:
        print(e, file=sys.stderr)
        return 2
    if a.count:
        print(m.param_count())
        return 0
    print(m.table())
    print("total: {:,} parameters, output {}{}".format(
        m.param_count(), shape_str(m.output_shape()), " per frame" if m.per_frame else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
