// Cone-beam slice kernels of the shear-warp projector for XLA:CPU (XLA FFI custom calls).
//
// The cone-beam projector resamples every slice of the volume by its own magnification onto the
// intermediate plane (lamino/projector/_shearwarp.py: zoom_contribution, _gather_zoom). In XLA that takes
// gathers, which XLA:CPU runs element by element at 0.5-3.5 ns each; here the same separable linear
// interpolation is a pair of plain loops (row blend, then column taps), 4-8x faster per view
// (docs/benchmarks.md).
//
// Slice s of the source array, as (n_a, n_b) with unit column stride:
//   slice_axis 0: src[s, a, b]   (stack 0 reads the volume, (nz, ny, nx))
//   slice_axis 1: src[a, s, b]   (stack 1 reads the volume; stack 2 its (nz, nx, ny) copy)
// params (n_views, n_c, 3): per view and slice (lam, kap_a, kap_b). A plane pixel (p, q) reads the slice at
// fractional index (lam*p + kap_a, lam*q + kap_b), bilinearly, with zero outside the slice (linear taper
// over one voxel). Each call serves a batch of views, so the volume is read (or updated) once per batch.
//
//   LaminoConeZoomSum:    planes (n_views, H, W) = sum_s zoom_s(slice_s)                 (forward)
//   LaminoConeZoomSumT:   acc += the exact transpose of that, applied to planes_ct       (adjoint)
//   LaminoConeZoomGather: acc slice s += sum_views bilinear(plane, (i - kap)/lam) / lam^2
//                         (voxel-driven backprojection)
//   LaminoBilinearSample, LaminoBilinearScatter: bilinear samples of images at given points (the warps
//                         between plane and detector), and their transpose

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// Each kernel is compiled for the baseline and, on x86-64 with GCC, for AVX2 + FMA (5-15 % faster per view);
// the handlers pick the version the CPU supports.
namespace lamino_base {
#include "_cone_cpu_kernels.h"
}  // namespace lamino_base

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LAMINO_HAS_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace lamino_avx2 {
#include "_cone_cpu_kernels.h"
}  // namespace lamino_avx2
#pragma GCC pop_options
#endif

namespace {

bool use_avx2() {   // LAMINO_NATIVE_BASELINE=1 runs the baseline build (to test it on an AVX2 machine)
#ifdef LAMINO_HAS_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         !(std::getenv("LAMINO_NATIVE_BASELINE") && std::getenv("LAMINO_NATIVE_BASELINE")[0] == '1');
  return ok;
#else
  return false;
#endif
}

#ifdef LAMINO_HAS_AVX2
#define LAMINO_DISPATCH(fn, ...) (use_avx2() ? lamino_avx2::fn(__VA_ARGS__) : lamino_base::fn(__VA_ARGS__))
#else
#define LAMINO_DISPATCH(fn, ...) lamino_base::fn(__VA_ARGS__)
#endif

using F32 = ffi::Buffer<ffi::F32>;
using F32Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error ZoomSum(F32 src, F32 params, F32Out planes, int64_t axis) {
  return LAMINO_DISPATCH(ZoomSum, src, params, planes, axis);
}
ffi::Error ZoomSumT(F32 acc, F32 planes, F32 params, F32Out out, int64_t axis) {
  return LAMINO_DISPATCH(ZoomSumT, acc, planes, params, out, axis);
}
ffi::Error ZoomGather(F32 acc, F32 planes, F32 params, F32Out out, int64_t axis) {
  return LAMINO_DISPATCH(ZoomGather, acc, planes, params, out, axis);
}
ffi::Error BilinearSample(F32 images, F32 rows, F32 cols, F32Out values) {
  return LAMINO_DISPATCH(BilinearSample, images, rows, cols, values);
}
ffi::Error BilinearScatter(F32 values, F32 rows, F32 cols, F32Out images) {
  return LAMINO_DISPATCH(BilinearScatter, values, rows, cols, images);
}

// FFI signatures: buffers in, one buffer out, and the slice axis for the slice kernels.
auto TwoToOne() { return ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>(); }
auto ThreeToOne() { return ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Ret<F32>(); }

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoConeZoomSum, ZoomSum, TwoToOne().Attr<int64_t>("slice_axis"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoConeZoomSumT, ZoomSumT, ThreeToOne().Attr<int64_t>("slice_axis"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoConeZoomGather, ZoomGather, ThreeToOne().Attr<int64_t>("slice_axis"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoBilinearSample, BilinearSample, ThreeToOne());
XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoBilinearScatter, BilinearScatter, ThreeToOne());
