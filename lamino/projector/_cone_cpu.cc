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
//
// The handlers check every buffer's rank and shape (and slice_axis) before the kernels touch any pointer, and
// return InvalidArgument ("<target>: what was wrong, what is allowed") on a mismatch; JAX raises it.
//
// ABI handshake: _native.py loads this library with ctypes and reads lamino_native_abi() and
// lamino_native_source_hash() before it registers any FFI target, and refuses a library whose values differ
// from its own (a stale build left from an older checkout, or a foreign library of the same name).
// kAbiVersion is the version of the targets' calling convention: bump it together with _native.ABI_VERSION
// whenever a target, its arguments or their meaning change. LAMINO_SOURCE_HASH is the hash of this file and
// _cone_cpu_kernels.h that setup.py passes in (_native.source_hash() computes it the same way).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// `#pragma GCC ivdep` (the loop that follows has no dependences that forbid vectorising it) is GCC's alone;
// Clang would warn about an unknown pragma.
#if defined(__GNUC__) && !defined(__clang__)
#define LAMINO_IVDEP _Pragma("GCC ivdep")
#else
#define LAMINO_IVDEP
#endif

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

#ifdef LAMINO_HAS_AVX2
bool use_avx2() {   // LAMINO_NATIVE_BASELINE=1 runs the baseline build (to test it on an AVX2 machine)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         !(std::getenv("LAMINO_NATIVE_BASELINE") && std::getenv("LAMINO_NATIVE_BASELINE")[0] == '1');
  return ok;
}
#define LAMINO_DISPATCH(fn, ...) (use_avx2() ? lamino_avx2::fn(__VA_ARGS__) : lamino_base::fn(__VA_ARGS__))
#else
#define LAMINO_DISPATCH(fn, ...) lamino_base::fn(__VA_ARGS__)
#endif

using F32 = ffi::Buffer<ffi::F32>;
using F32Out = ffi::ResultBuffer<ffi::F32>;
using Dims = ffi::Span<const int64_t>;

std::string shape(Dims d) {   // "(2, 3, 4)"
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (d.size() == 1 ? ",)" : ")");
}

ffi::Error invalid(const char* target, const std::string& what) {
  return ffi::Error::InvalidArgument(std::string(target) + ": " + what);
}

// The slice kernels: slice_axis 0 or 1; a 3-D slice source `src` (the volume, or the accumulator);
// params (n_views, n_slices, 3) with the source's slice count; planes (n_views, H, W).
ffi::Error check_slices(const char* target, const char* src_name, Dims src, Dims params, const char* planes_name,
                        Dims planes, int64_t axis) {
  if (axis != 0 && axis != 1) return invalid(target, "slice_axis must be 0 or 1, got " + std::to_string(axis));
  if (src.size() != 3)
    return invalid(target, std::string(src_name) + " must be 3-D (slices along axis 0 or 1), got " + shape(src));
  const int64_t n_c = src[axis];
  if (params.size() != 3 || params[1] != n_c || params[2] != 3)
    return invalid(target, "params must have shape (n_views, " + std::to_string(n_c) + ", 3) for a " + src_name +
                               " of " + std::to_string(n_c) + " slices along axis " + std::to_string(axis) +
                               ", got " + shape(params));
  if (planes.size() != 3 || planes[0] != params[0])
    return invalid(target, std::string(planes_name) + " must have shape (" + std::to_string(params[0]) +
                               ", H, W) for params of " + std::to_string(params[0]) + " views, got " +
                               shape(planes));
  return ffi::Error::Success();
}

// The in-place kernels: the output (aliased to the accumulator) has the accumulator's shape.
ffi::Error check_in_place(const char* target, Dims acc, Dims out) {
  if (out == acc) return ffi::Error::Success();
  return invalid(target, "the output must have the shape of acc " + shape(acc) + ", got " + shape(out));
}

// The bilinear kernels: images (n, h, w) and point arrays (rows, cols, values) all of the first one's shape
// (n, ...).
ffi::Error check_points(const char* target, Dims images, std::initializer_list<std::pair<const char*, Dims>> points) {
  if (images.size() != 3) return invalid(target, "images must have shape (n, h, w), got " + shape(images));
  const auto& [name0, dims0] = *points.begin();
  if (dims0.size() == 0 || dims0[0] != images[0])
    return invalid(target, std::string(name0) + " must have shape (" + std::to_string(images[0]) +
                               ", ...) for images of shape " + shape(images) + ", got " + shape(dims0));
  for (const auto& [name, dims] : points)
    if (!(dims == dims0))
      return invalid(target, std::string(name) + " must have the shape of " + name0 + " " + shape(dims0) +
                                 ", got " + shape(dims));
  return ffi::Error::Success();
}

ffi::Error ZoomSum(F32 src, F32 params, F32Out planes, int64_t axis) {
  const char* target = "LaminoConeZoomSum";
  if (auto err = check_slices(target, "src", src.dimensions(), params.dimensions(), "planes",
                              planes->dimensions(), axis);
      err.failure())
    return err;
  return LAMINO_DISPATCH(ZoomSum, src, params, planes, axis);
}
ffi::Error ZoomSumT(F32 acc, F32 planes, F32 params, F32Out out, int64_t axis) {
  const char* target = "LaminoConeZoomSumT";
  if (auto err = check_slices(target, "acc", acc.dimensions(), params.dimensions(), "planes_ct",
                              planes.dimensions(), axis);
      err.failure())
    return err;
  if (auto err = check_in_place(target, acc.dimensions(), out->dimensions()); err.failure()) return err;
  return LAMINO_DISPATCH(ZoomSumT, acc, planes, params, out, axis);
}
ffi::Error ZoomGather(F32 acc, F32 planes, F32 params, F32Out out, int64_t axis) {
  const char* target = "LaminoConeZoomGather";
  if (auto err = check_slices(target, "acc", acc.dimensions(), params.dimensions(), "planes",
                              planes.dimensions(), axis);
      err.failure())
    return err;
  if (auto err = check_in_place(target, acc.dimensions(), out->dimensions()); err.failure()) return err;
  return LAMINO_DISPATCH(ZoomGather, acc, planes, params, out, axis);
}
ffi::Error BilinearSample(F32 images, F32 rows, F32 cols, F32Out values) {
  if (auto err = check_points("LaminoBilinearSample", images.dimensions(),
                              {{"rows", rows.dimensions()}, {"cols", cols.dimensions()},
                               {"the output", values->dimensions()}});
      err.failure())
    return err;
  return LAMINO_DISPATCH(BilinearSample, images, rows, cols, values);
}
ffi::Error BilinearScatter(F32 values, F32 rows, F32 cols, F32Out images) {
  if (auto err = check_points("LaminoBilinearScatter", images->dimensions(),
                              {{"values", values.dimensions()}, {"rows", rows.dimensions()},
                               {"cols", cols.dimensions()}});
      err.failure())
    return err;
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

// The ABI handshake (see the top of this file).
constexpr int64_t kAbiVersion = 1;
#ifndef LAMINO_SOURCE_HASH
#define LAMINO_SOURCE_HASH "unknown"   // not built by setup.py: _native.py refuses the library
#endif

extern "C" {
int64_t lamino_native_abi() { return kAbiVersion; }
const char* lamino_native_source_hash() { return LAMINO_SOURCE_HASH; }
}
