"""The fused sequence path's per-step gate arithmetic as device kernels: one launch per step each way.

On CuPy the cells' fused whole-sequence pair (``fused_sequence``,
``fused_sequence_vjp``; see :mod:`refnet.algorithms.fused`) runs the loops
below.  Each step is one recurrent GEMM through cuBLAS (``xp.matmul`` with
``out=``) and ONE elementwise kernel that does all of that step's gate
arithmetic — activations, the cell update, and on the way back every gate's
pre-activation cotangent — instead of the ten to twenty small array
operations (each a kernel launch and a temporary) of the array loop in the
cell's module.  The input projection before the loop and the weight
gradients after it are single GEMMs over all T·B rows, as on every backend.

The kernels' bodies are CUDA C with one type placeholder ``T`` (float32 or
float64), kept here as data (:data:`SPECS`, built by :func:`spec`), and
built two ways:

- on CuPy, each is a :class:`cupy.ElementwiseKernel` (compiled by NVRTC at
  first use and cached by CuPy);
- under :func:`host_emulation`, the same body text is compiled for the host
  by the system C++ compiler into one shared library and called through
  :mod:`ctypes` on NumPy arrays, with ElementwiseKernel's calling convention
  (inputs broadcast, outputs written in place, strided views allowed).  That
  is how CI without a GPU runs the very loops and the very arithmetic that
  CuPy runs, and holds them equal to the per-step path
  (``tests/test_fused_device.py`` and the matrix row "fused device kernel,
  host-compiled = per-step path").

What the host build cannot show: NVRTC-only compile errors, launch
configuration, and the GPU's own rounding (CUDA's ``tanh`` and the
compiler's fused multiply-adds differ from the host's in the last bits;
every comparison uses the dtype's ``exact`` tolerance, not bit equality).

The plain twin of every loop is the array loop in the cell's module, and the
reference is the per-step path (``REFNET_FUSED=0``).  The cells covered are
those whose per-step work is gate arithmetic: Elman (tanh, ReLU; the iRNN
is Elman ReLU), LSTM (Hochreiter & Schmidhuber 1997, PyTorch's gate order),
GRU (Cho et al. 2014, PyTorch's form), FastRNN and FastGRNN (Kusupati et al.
2018, Eqs. 1–4).  The fast-weights attention form (Ba et al. 2016) keeps its
array loop on the device: its per-step work is batched products with the
stored states and a layer-norm reduction, which are GEMMs and reductions
already, not elementwise gate math.

Sigmoid is written σ(a) = (tanh(a/2) + 1)/2 as in
:mod:`refnet.cells.activations`; derivatives are read from the outputs
(σ' = y(1 − y), tanh' = 1 − y², ReLU' = [y > 0]).
"""
import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass

import numpy

from ..backend import xp_of

__all__ = ["ACTIVATIONS", "KernelSpec", "spec", "kernel_names", "HostCompilerError", "host_emulation",
           "host_compiler", "kernels_for", "elman_forward", "elman_backward", "lstm_forward", "lstm_backward", "gru_forward",
           "gru_backward", "fastrnn_forward", "fastrnn_backward", "fastgrnn_forward", "fastgrnn_backward"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")


def _act(name, a):
    """C expression for φ(a), ``a`` an identifier (ReLU reads it twice)."""
    return {"sigmoid": f"((T)0.5 * (tanh((T)0.5 * {a}) + (T)1))",
            "tanh": f"tanh({a})",
            "relu": f"({a} > (T)0 ? {a} : (T)0)"}[name]


def _dact(name, y):
    """C expression for φ'(a) read from y = φ(a)."""
    return {"sigmoid": f"({y} * ((T)1 - {y}))",
            "tanh": f"((T)1 - {y} * {y})",
            "relu": f"({y} > (T)0 ? (T)1 : (T)0)"}[name]


@dataclass(frozen=True)
class KernelSpec:
    """One elementwise kernel: ElementwiseKernel's three strings and its name.

    Attributes
    ----------
    name : str
        A C identifier, unique per body (activations are part of it).
    inputs : tuple of str
        Input parameter names, each declared ``T name`` (broadcast like NumPy).
    outputs : tuple of str
        Output parameter names, each ``T name``, written in place; the body
        may read an output before writing it (an in-out argument).
    body : str
        The per-element C statements.
    """
    name: str
    inputs: tuple
    outputs: tuple
    body: str

    @property
    def in_params(self):
        """``"T a, T b"``: ElementwiseKernel's in_params string."""
        return ", ".join(f"T {p}" for p in self.inputs)

    @property
    def out_params(self):
        """ElementwiseKernel's out_params string."""
        return ", ".join(f"T {p}" for p in self.outputs)


def _elman_forward(act):
    # h_t = φ(W_ih x_t + b_ih + b_hh + W_hh h_{t−1}) (Elman 1990); xw and r are the two products.
    return (("xw", "r"), ("h",), f"const T a = xw + r;\nh = {_act(act, 'a')};")


def _elman_backward(act):
    # ∂L/∂a_t = (∂L/∂h_t carried + ∂L/∂h_t from the loss) ⊙ φ'(a_t)
    return (("dh", "dout", "h"), ("da",), f"da = (dh + dout) * {_dact(act, 'h')};")


def _lstm_forward():
    # Hochreiter & Schmidhuber (1997), PyTorch's order i|f|g|o: c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t).
    return (("xi", "xf", "xg", "xo", "ri", "rf", "rg", "ro", "c_prev"), ("gi", "gf", "gg", "go", "c", "tc", "h"),
            "const T ai = xi + ri;\nconst T af = xf + rf;\nconst T ag = xg + rg;\nconst T ao = xo + ro;\n"
            f"gi = {_act('sigmoid', 'ai')};\ngf = {_act('sigmoid', 'af')};\n"
            f"gg = tanh(ag);\ngo = {_act('sigmoid', 'ao')};\n"
            "c = gf * c_prev + gi * gg;\ntc = tanh(c);\nh = go * tc;")


def _lstm_backward():
    # dc enters as ∂L/∂c_t (carried) and leaves as ∂L/∂c_{t−1} = ∂L/∂c_t ⊙ f.
    return (("dh", "dout", "gi", "gf", "gg", "go", "c_prev", "tc"), ("dai", "daf", "dag", "dao", "dc"),
            "const T dh_t = dh + dout;\n"
            f"const T dc_t = dc + dh_t * go * {_dact('tanh', 'tc')};\n"
            f"dai = dc_t * gg * {_dact('sigmoid', 'gi')};\n"
            f"daf = dc_t * c_prev * {_dact('sigmoid', 'gf')};\n"
            f"dag = dc_t * gi * {_dact('tanh', 'gg')};\n"
            f"dao = dh_t * tc * {_dact('sigmoid', 'go')};\n"
            "dc = dc_t * gf;")


def _gru_forward():
    # Cho et al. (2014), PyTorch's form: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
    # h_t = (1 − z) ⊙ n + z ⊙ h_{t−1} = (h_{t−1} − n) ⊙ z + n.  hr|hz|hn = W_hh h_{t−1} + b_hh.
    return (("xr", "xz", "xn", "hr", "hz", "hn", "h_prev"), ("gr", "gz", "gn", "a_hn", "h"),
            "const T ar = xr + hr;\nconst T az = xz + hz;\n"
            f"gr = {_act('sigmoid', 'ar')};\ngz = {_act('sigmoid', 'az')};\n"
            "a_hn = hn;\ngn = tanh(gr * hn + xn);\nh = (h_prev - gn) * gz + gn;")


def _gru_backward():
    # The input side's pre-activation cotangents (dri, dzi, dni) and the hidden side's (drh, dzh, dnh = dn ⊙ r);
    # carry = ∂L/∂h_t ⊙ z, the direct part of ∂L/∂h_{t−1}.
    return (("dh", "dout", "gr", "gz", "gn", "a_hn", "h_prev"), ("dri", "dzi", "dni", "drh", "dzh", "dnh", "carry"),
            "const T dh_t = dh + dout;\n"
            f"const T dn = dh_t * ((T)1 - gz) * {_dact('tanh', 'gn')};\n"
            f"const T dr = dn * a_hn * {_dact('sigmoid', 'gr')};\n"
            f"const T dz = dh_t * (h_prev - gn) * {_dact('sigmoid', 'gz')};\n"
            "dri = dr;\ndzi = dz;\ndni = dn;\ndrh = dr;\ndzh = dz;\ndnh = dn * gr;\ncarry = dh_t * gz;")


def _fastrnn_forward(act):
    # Kusupati et al. (2018), Eqs. 1–2: h̃_t = φ(W x_t + U h_{t−1} + b), h_t = α h̃_t + β h_{t−1}.
    return (("xw", "r", "h_prev", "alpha", "beta"), ("ht", "h"),
            f"const T a = xw + r;\nht = {_act(act, 'a')};\nh = alpha * ht + beta * h_prev;")


def _fastrnn_backward(act):
    return (("dh", "dout", "ht", "alpha", "beta"), ("ds", "da", "carry"),
            f"ds = dh + dout;\nda = alpha * ds * {_dact(act, 'ht')};\ncarry = beta * ds;")


def _fastgrnn_forward(gate, update):
    # Kusupati et al. (2018), Eqs. 3–4: z_t = σ_g(a + b_z), h̃_t = φ_u(a + b_h) with a = W x_t + U h_{t−1};
    # h_t = (ζ (1 − z_t) + ν) ⊙ h̃_t + z_t ⊙ h_{t−1}.
    return (("xw", "r", "b_z", "b_h", "h_prev", "zeta", "nu"), ("z", "ht", "h"),
            "const T a = xw + r;\nconst T a_z = a + b_z;\nconst T a_h = a + b_h;\n"
            f"z = {_act(gate, 'a_z')};\nht = {_act(update, 'a_h')};\n"
            "h = (zeta * ((T)1 - z) + nu) * ht + z * h_prev;")


def _fastgrnn_backward(gate, update):
    return (("dh", "dout", "z", "ht", "h_prev", "zeta", "nu"), ("ds", "da_z", "da_h", "da", "carry"),
            "ds = dh + dout;\n"
            f"da_z = ds * (h_prev - zeta * ht) * {_dact(gate, 'z')};\n"
            f"da_h = ds * (zeta * ((T)1 - z) + nu) * {_dact(update, 'ht')};\n"
            "da = da_z + da_h;\ncarry = ds * z;")


_BUILDERS = {
    "elman_forward": (_elman_forward, 1), "elman_backward": (_elman_backward, 1),
    "lstm_forward": (_lstm_forward, 0), "lstm_backward": (_lstm_backward, 0),
    "gru_forward": (_gru_forward, 0), "gru_backward": (_gru_backward, 0),
    "fastrnn_forward": (_fastrnn_forward, 1), "fastrnn_backward": (_fastrnn_backward, 1),
    "fastgrnn_forward": (_fastgrnn_forward, 2), "fastgrnn_backward": (_fastgrnn_backward, 2),
}


def spec(kind, *activations):
    """The :class:`KernelSpec` of one kernel.

    Parameters
    ----------
    kind : str
        One of the keys of the builders: ``"elman_forward"``, ``"lstm_backward"``, ... (see
        :func:`kernel_names`).
    *activations : str
        The activations the body is written for, each in :data:`ACTIVATIONS`: one for Elman and
        FastRNN (φ), two for FastGRNN (gate, update), none for LSTM and GRU.

    Returns
    -------
    KernelSpec

    Raises
    ------
    ValueError
        If ``kind`` is unknown, or the number or names of ``activations`` do not fit it.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"kind must be one of {sorted(_BUILDERS)}, got {kind!r}")
    build, arity = _BUILDERS[kind]
    if len(activations) != arity or any(a not in ACTIVATIONS for a in activations):
        raise ValueError(f"{kind} takes {arity} activation(s) from {ACTIVATIONS}, got {activations!r}")
    inputs, outputs, body = build(*activations)
    return KernelSpec("_".join(("refnet", kind) + activations), inputs, outputs, body)


def kernel_names():
    """Every (kind, activations) pair a fused cell can ask for, for building or testing them all.

    Returns
    -------
    list of tuple
        ``(kind, *activations)`` tuples.

    Raises
    ------
    None
        Nothing of its own: it takes no argument.
    """
    names = []
    for kind, (_, arity) in _BUILDERS.items():
        if arity == 0:
            names.append((kind,))
        elif arity == 1:
            names += [(kind, a) for a in ("tanh", "relu", "sigmoid")]
        else:
            names += [(kind, g, u) for g in ACTIVATIONS for u in ACTIVATIONS]
    return names


# ------------------------------------------------------------------ the two builds of a body

class _CountingKernel:
    """A built kernel, counting its launches (the evidence that the device path ran)."""

    def __init__(self, spec_, launch):
        self.spec = spec_
        self.launch = launch
        self.calls = 0

    def __call__(self, *arrays):
        self.calls += 1
        self.launch(*arrays)


class _CupyKernels:
    """Kernels built as :class:`cupy.ElementwiseKernel`, one per spec, made at first use."""

    def __init__(self, cupy):
        self.cupy = cupy
        self.built = {}

    def get(self, kind, *activations):
        key = (kind,) + activations
        if key not in self.built:
            s = spec(kind, *activations)
            k = self.cupy.ElementwiseKernel(s.in_params, s.out_params, s.body, s.name)
            self.built[key] = _CountingKernel(s, k)
        return self.built[key]


class HostCompilerError(RuntimeError):
    """No C++ compiler could build the kernels' bodies for the host (host emulation only)."""


_PRELUDE = "#include <cmath>\nusing namespace std;\n"


def _host_source(specs):
    """One C++ translation unit: for each spec a loop over elements around its body, in float and double."""
    parts = [_PRELUDE]
    for s in specs:
        args = ", ".join([f"const T* __restrict__ _in_{p}" for p in s.inputs] + [f"T* __restrict__ _out_{p}"
                                                                                  for p in s.outputs])
        loads = "".join(f"    const T {p} = _in_{p}[_k];\n" for p in s.inputs)
        refs = "".join(f"    T& {p} = _out_{p}[_k];\n" for p in s.outputs)
        body = "".join(f"    {line}\n" for line in s.body.splitlines())
        parts.append(f"template <typename T>\nstatic void {s.name}_loop(long _n, {args}) {{\n"
                     f"  for (long _k = 0; _k < _n; ++_k) {{\n{loads}{refs}{body}  }}\n}}\n")
        names = ", ".join([f"_in_{p}" for p in s.inputs] + [f"_out_{p}" for p in s.outputs])
        for ctype, suffix in (("double", "f64"), ("float", "f32")):
            c_args = args.replace("const T*", f"const {ctype}*").replace("T*", f"{ctype}*")
            parts.append(f'extern "C" void {s.name}_{suffix}(long _n, {c_args}) '
                         f"{{ {s.name}_loop<{ctype}>(_n, {names}); }}\n")
    return "".join(parts)


def host_compiler():
    """The C++ compiler host emulation uses: ``$CXX``, else the first of c++, g++, clang++ on PATH.

    Returns
    -------
    str or None
        The compiler's command, or None if there is none.

    Raises
    ------
    None
        Nothing of its own: it reads the environment and PATH.
    """
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _compile_host_library(source):
    """Compile ``source`` into a shared library once per source text (cached in the temp directory)."""
    compiler = host_compiler()
    if not compiler:
        raise HostCompilerError("host emulation of the device kernels needs a C++ compiler (set CXX, or install "
                                "g++/clang++); none was found")
    digest = hashlib.sha256((compiler + "\0" + source).encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"refnet-fused-device-{digest}.so")
    if os.path.exists(path):
        try:
            # Only a library this user built is trusted (the temp directory is shared and the name is
            # predictable); a truncated, foreign or unreadable file is built afresh below, not fatal.
            if os.stat(path).st_uid == os.getuid():
                return ctypes.CDLL(path)
        except OSError:
            pass
    fd, partial = tempfile.mkstemp(suffix=".so", dir=tempfile.gettempdir())
    os.close(fd)
    # -ffp-contract=off: no fused multiply-adds the body does not ask for, so the host build rounds
    # like the array twin; the GPU build is compared with a tolerance for exactly that reason.
    command = [compiler, "-O2", "-shared", "-fPIC", "-ffp-contract=off", "-x", "c++", "-", "-o", partial]
    try:
        done = subprocess.run(command, input=source.encode(), capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        os.unlink(partial)
        raise HostCompilerError(f"{compiler} could not be run: {error}") from error
    if done.returncode != 0:
        os.unlink(partial)
        raise HostCompilerError(f"{compiler} failed on the kernels' bodies:\n{done.stderr.decode()[-4000:]}")
    try:
        os.replace(partial, path)      # atomic: concurrent test processes see a whole library or none
    except OSError:                    # another user's file in a sticky temp directory: keep ours private
        return ctypes.CDLL(partial)
    return ctypes.CDLL(path)


class _HostKernels:
    """Kernels compiled for the host from the same bodies, called with ElementwiseKernel's convention."""

    def __init__(self):
        self.built = {}
        self.library = _compile_host_library(_host_source([spec(*key) for key in kernel_names()]))

    def get(self, kind, *activations):
        key = (kind,) + activations
        if key not in self.built:
            s = spec(kind, *activations)
            functions = {numpy.dtype("float64"): getattr(self.library, f"{s.name}_f64"),
                         numpy.dtype("float32"): getattr(self.library, f"{s.name}_f32")}
            self.built[key] = _CountingKernel(s, lambda *arrays, s=s, f=functions: _host_launch(s, f, arrays))
        return self.built[key]


def _host_launch(s, functions, arrays):
    """Run one host-compiled kernel like ElementwiseKernel: broadcast inputs, write outputs in place."""
    if len(arrays) != len(s.inputs) + len(s.outputs):
        raise TypeError(f"{s.name} takes {len(s.inputs)} inputs and {len(s.outputs)} outputs, got "
                        f"{len(arrays)} arrays")
    dtype = arrays[len(s.inputs)].dtype
    if any(numpy.asarray(a).dtype != dtype for a in arrays) or dtype not in functions:
        raise TypeError(f"{s.name}: every argument must share one float32/float64 dtype (T), got "
                        f"{[str(numpy.asarray(a).dtype) for a in arrays]}")
    ins, outs = arrays[:len(s.inputs)], arrays[len(s.inputs):]
    shape = numpy.broadcast_shapes(*(numpy.shape(a) for a in arrays))
    if any(o.shape != shape for o in outs):
        raise ValueError(f"{s.name}: outputs must have the broadcast shape {shape}, got {[o.shape for o in outs]}")
    ins_c = [numpy.ascontiguousarray(numpy.broadcast_to(a, shape)) for a in ins]
    outs_c = [o if o.flags.c_contiguous else numpy.ascontiguousarray(o) for o in outs]  # copies carry in-out values
    pointer = ctypes.c_void_p
    functions[dtype](ctypes.c_long(int(numpy.prod(shape))), *(pointer(a.ctypes.data) for a in ins_c + outs_c))
    for o, c in zip(outs, outs_c):
        if c is not o:
            o[...] = c


_lock = threading.Lock()
_built = {}
_emulating = [0]


@contextlib.contextmanager
def host_emulation():
    """Run the device loops on NumPy arrays, with the kernels' bodies compiled for the host.

    Inside the block, :func:`kernels_for` answers for NumPy as it does for
    CuPy, so the cells' fused pair takes the device loops; the first use
    compiles every body with the system C++ compiler (cached on disk).  A
    testing aid: it shows that the loops and the arithmetic CuPy runs equal
    the per-step path, on a machine without a GPU.

    Yields
    ------
    object
        The kernel set in use; its ``get(kind, *activations).calls`` counts launches.

    Raises
    ------
    HostCompilerError
        If no C++ compiler is found or it fails on the bodies.
    """
    kernels = _kernel_set("host")
    _emulating[0] += 1
    try:
        yield kernels
    finally:
        _emulating[0] -= 1


def _kernel_set(which):
    with _lock:
        if which not in _built:
            if which == "host":
                _built[which] = _HostKernels()
            else:
                import cupy          # only reached with CuPy arrays in hand
                _built[which] = _CupyKernels(cupy)
        return _built[which]


def kernels_for(xp):
    """The kernel set the fused pair uses for arrays of module ``xp``, or None for the array loop.

    Parameters
    ----------
    xp : module
        The array module of the inputs (:func:`refnet.backend.xp_of`).

    Returns
    -------
    object or None
        CuPy's ElementwiseKernels for ``cupy``; the host build for ``numpy`` inside
        :func:`host_emulation`; None otherwise (NumPy outside it, the strict device double).

    Raises
    ------
    HostCompilerError
        Never outside :func:`host_emulation` (the host build is made on entering it).
    """
    name = getattr(xp, "__name__", "")
    if name == "cupy":
        return _kernel_set("cupy")
    if name == "numpy" and _emulating[0]:
        return _built["host"]
    return None


# ------------------------------------------------------------------ the loops (twins: the cells' array loops)

def _recurrent(xp, h, W, out):
    """out = h Wᵀ, one GEMM (cuBLAS on CuPy)."""
    xp.matmul(h, W.T, out=out)
    return out


def elman_forward(ks, act, XW, W_hh, hs):
    """h_{t+1} = φ(XW[t] + h_t W_hhᵀ) for t = 0..T−1 (Elman 1990): one GEMM and one launch per step.

    Parameters
    ----------
    ks : kernel set
        From :func:`kernels_for`.
    act : str
        φ, ``"tanh"`` or ``"relu"``.
    XW : (T, B, H) array
        x_t W_ihᵀ + b_ih + b_hh for every step.
    W_hh : (H, H) array
    hs : (T + 1, B, H) array
        hs[0] = h_0 on entry; hs[1..T] are written.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype (the kernel's T).
    """
    xp = xp_of(XW)
    k, R = ks.get("elman_forward", act), xp.empty_like(hs[0])
    for t in range(XW.shape[0]):
        k(XW[t], _recurrent(xp, hs[t], W_hh, R), hs[t + 1])


def elman_backward(ks, act, W_hh, hs, dout, start, dh, dA):
    """Steps start+n..start+1 back: dA[j] = (dh + dout[j]) ⊙ φ'(h_{start+j+1}); dh ← dA[j] W_hh.

    Parameters
    ----------
    ks : kernel set
    act : str
        φ, ``"tanh"`` or ``"relu"``.
    W_hh : (H, H) array
    hs : (T + 1, B, H) array
        The forward's states.
    dout : (n, B, H) array
        ∂L/∂h from the loss for the window's steps.
    start : int
        The window starts after step ``start``.
    dh : (B, H) array
        In: ∂L/∂h_{start+n} carried; out: ∂L/∂h_start.
    dA : (n, B, H) array
        Written: ∂L/∂a per step.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(dh)
    k = ks.get("elman_backward", act)
    for j in range(dA.shape[0] - 1, -1, -1):
        k(dh, dout[j], hs[start + j + 1], dA[j])
        xp.matmul(dA[j], W_hh, out=dh)


def lstm_forward(ks, XW, W_hh, hs, cs, gates, tanh_c):
    """The LSTM over all steps (Hochreiter & Schmidhuber 1997; PyTorch's gate order i|f|g|o).

    Parameters
    ----------
    ks : kernel set
    XW : (T, B, 4H) array
        x_t W_ihᵀ + b_ih + b_hh.
    W_hh : (4H, H) array
    hs : (T + 1, B, H) array
        hs[0] = h_0 on entry; the rest written.
    cs : (T + 1, B, H) array
        cs[0] = c_0 on entry; the rest written.
    gates : (T, B, 4H) array
        Written: the activated gates i|f|g|o.
    tanh_c : (T, B, H) array
        Written: tanh(c_{t+1}).

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(XW)
    H = hs.shape[2]
    k, R = ks.get("lstm_forward"), xp.empty_like(gates[0])
    for t in range(XW.shape[0]):
        _recurrent(xp, hs[t], W_hh, R)
        k(*_blocks(XW[t], 4, H), *_blocks(R, 4, H), cs[t], *_blocks(gates[t], 4, H), cs[t + 1], tanh_c[t], hs[t + 1])


def lstm_backward(ks, W_hh, cs, gates, tanh_c, dout, start, dh, dc, dA):
    """Back through steps start+n..start+1 of the LSTM: one launch and one product dA[j] W_hh per step.

    Parameters
    ----------
    ks : kernel set
    W_hh : (4H, H) array
    cs : (T + 1, B, H) array
    gates : (T, B, 4H) array
    tanh_c : (T, B, H) array
    dout : (n, B, H) array
    start : int
    dh : (B, H) array
        In: ∂L/∂h_{start+n}; out: ∂L/∂h_start.
    dc : (B, H) array
        In: ∂L/∂c_{start+n}; out: ∂L/∂c_start.
    dA : (n, B, 4H) array
        Written: ∂L/∂(gate pre-activations) per step.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(dh)
    H = dh.shape[1]
    k = ks.get("lstm_backward")
    for j in range(dA.shape[0] - 1, -1, -1):
        t = start + j
        k(dh, dout[j], *_blocks(gates[t], 4, H), cs[t], tanh_c[t], *_blocks(dA[j], 4, H), dc)
        xp.matmul(dA[j], W_hh, out=dh)


def gru_forward(ks, XI, W_hh, b_hh, hs, gates, a_hn):
    """The GRU over all steps (Cho et al. 2014, PyTorch's form r|z|n).

    Parameters
    ----------
    ks : kernel set
    XI : (T, B, 3H) array
        x_t W_ihᵀ + b_ih.
    W_hh : (3H, H) array
    b_hh : (3H,) array
    hs : (T + 1, B, H) array
        hs[0] = h_0 on entry; the rest written.
    gates : (T, B, 3H) array
        Written: r|z|n.
    a_hn : (T, B, H) array
        Written: W_hn h_{t−1} + b_hn.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(XI)
    H = hs.shape[2]
    k, R = ks.get("gru_forward"), xp.empty_like(gates[0])
    for t in range(XI.shape[0]):
        _recurrent(xp, hs[t], W_hh, R)
        R += b_hh
        k(*_blocks(XI[t], 3, H), *_blocks(R, 3, H), hs[t], *_blocks(gates[t], 3, H), a_hn[t], hs[t + 1])


def gru_backward(ks, W_hh, hs, gates, a_hn, dout, start, dh, dA_i, dA_h):
    """Back through steps start+n..start+1 of the GRU: dh ← dA_h[j] W_hh + ∂L/∂h_t ⊙ z.

    Parameters
    ----------
    ks : kernel set
    W_hh : (3H, H) array
    hs : (T + 1, B, H) array
    gates : (T, B, 3H) array
    a_hn : (T, B, H) array
    dout : (n, B, H) array
    start : int
    dh : (B, H) array
        In: ∂L/∂h_{start+n}; out: ∂L/∂h_start.
    dA_i : (n, B, 3H) array
        Written: cotangents of the input side's pre-activations.
    dA_h : (n, B, 3H) array
        Written: cotangents of the hidden side's pre-activations.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(dh)
    H = dh.shape[1]
    k, carry = ks.get("gru_backward"), xp.empty_like(dh)
    for j in range(dA_i.shape[0] - 1, -1, -1):
        t = start + j
        k(dh, dout[j], *_blocks(gates[t], 3, H), a_hn[t], hs[t], *_blocks(dA_i[j], 3, H), *_blocks(dA_h[j], 3, H),
          carry)
        xp.matmul(dA_h[j], W_hh, out=dh)
        dh += carry


def fastrnn_forward(ks, act, XW, U, alpha, beta, hs, h_tilde):
    """FastRNN over all steps (Kusupati et al. 2018, Eqs. 1–2).

    Parameters
    ----------
    ks : kernel set
    act : str
        φ, one of :data:`ACTIVATIONS`.
    XW : (T, B, H) array
        x_t Wᵀ + b.
    U : (H, H) array
    alpha : (1,) array
        α = sigmoid(α̂).
    beta : (1,) array
        β = sigmoid(β̂).
    hs : (T + 1, B, H) array
        hs[0] = h_0 on entry; the rest written.
    h_tilde : (T, B, H) array
        Written: h̃_t.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(XW)
    k, R = ks.get("fastrnn_forward", act), xp.empty_like(hs[0])
    for t in range(XW.shape[0]):
        k(XW[t], _recurrent(xp, hs[t], U, R), hs[t], alpha, beta, h_tilde[t], hs[t + 1])


def fastrnn_backward(ks, act, U, h_tilde, dout, start, alpha, beta, dh, dS, dA):
    """Back through steps start+n..start+1 of FastRNN: dh ← dA[j] U + β dS[j].

    Parameters
    ----------
    ks : kernel set
    act : str
    U : (H, H) array
    h_tilde : (T, B, H) array
    dout : (n, B, H) array
    start : int
    alpha : (1,) array
    beta : (1,) array
    dh : (B, H) array
        In: ∂L/∂h_{start+n}; out: ∂L/∂h_start.
    dS : (n, B, H) array
        Written: ∂L/∂h_t per step.
    dA : (n, B, H) array
        Written: ∂L/∂a_t per step.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(dh)
    k, carry = ks.get("fastrnn_backward", act), xp.empty_like(dh)
    for j in range(dA.shape[0] - 1, -1, -1):
        k(dh, dout[j], h_tilde[start + j], alpha, beta, dS[j], dA[j], carry)
        xp.matmul(dA[j], U, out=dh)
        dh += carry


def fastgrnn_forward(ks, gate, update, XW, U, b_z, b_h, zeta, nu, hs, z, h_tilde):
    """FastGRNN over all steps (Kusupati et al. 2018, Eqs. 3–4).

    Parameters
    ----------
    ks : kernel set
    gate : str
        The gate's activation.
    update : str
        The update's activation.
    XW : (T, B, H) array
        x_t Wᵀ.
    U : (H, H) array
    b_z : (H,) array
    b_h : (H,) array
    zeta : (1,) array
        ζ = sigmoid(ζ̂).
    nu : (1,) array
        ν = sigmoid(ν̂).
    hs : (T + 1, B, H) array
        hs[0] = h_0 on entry; the rest written.
    z : (T, B, H) array
        Written: the gate z_t.
    h_tilde : (T, B, H) array
        Written: h̃_t.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(XW)
    k, R = ks.get("fastgrnn_forward", gate, update), xp.empty_like(hs[0])
    for t in range(XW.shape[0]):
        k(XW[t], _recurrent(xp, hs[t], U, R), b_z, b_h, hs[t], zeta, nu, z[t], h_tilde[t], hs[t + 1])


def fastgrnn_backward(ks, gate, update, U, hs, z, h_tilde, dout, start, zeta, nu, dh, dS, dA_z, dA_h, dA):
    """Back through steps start+n..start+1 of FastGRNN: dh ← dA[j] U + dS[j] ⊙ z_t.

    Parameters
    ----------
    ks : kernel set
    gate : str
    update : str
    U : (H, H) array
    hs : (T + 1, B, H) array
    z : (T, B, H) array
    h_tilde : (T, B, H) array
    dout : (n, B, H) array
    start : int
    zeta : (1,) array
    nu : (1,) array
    dh : (B, H) array
        In: ∂L/∂h_{start+n}; out: ∂L/∂h_start.
    dS : (n, B, H) array
        Written: ∂L/∂h_t per step.
    dA_z : (n, B, H) array
        Written: the gate pre-activation's cotangent.
    dA_h : (n, B, H) array
        Written: the update pre-activation's cotangent.
    dA : (n, B, H) array
        Written: dA_z + dA_h.

    Raises
    ------
    TypeError
        If the arrays do not share one float dtype.
    """
    xp = xp_of(dh)
    k, carry = ks.get("fastgrnn_backward", gate, update), xp.empty_like(dh)
    for j in range(dA.shape[0] - 1, -1, -1):
        t = start + j
        k(dh, dout[j], z[t], h_tilde[t], hs[t], zeta, nu, dS[j], dA_z[j], dA_h[j], dA[j], carry)
        xp.matmul(dA[j], U, out=dh)
        dh += carry


def _blocks(a, count, H):
    """The ``count`` column blocks of width H of a (B, count·H) array, as views."""
    return [a[:, k * H:(k + 1) * H] for k in range(count)]

