// Cone-beam slice kernels of the shear-warp projector for XLA:CPU (XLA FFI custom calls).
//
// The cone-beam projector resamples every slice of the volume by its own magnification onto the
// intermediate plane (lamino/projector/_shearwarp.py: zoom_contribution, _gather_zoom). In XLA that takes
// gathers, which XLA:CPU runs element by element at 0.5-3.5 ns each; here the same separable linear
// interpolation is a pair of plain loops (row blend, then column taps), 3-5x faster per view.
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

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Slices of a 3-D C-ordered array read along one of its first two axes.
struct Slices {
  int64_t n_c, n_a, n_b;             // slice count, rows, columns
  int64_t slice_stride, row_stride;  // in elements; column stride 1

  Slices(ffi::Span<const int64_t> dims, int64_t slice_axis) {
    n_b = dims[2];
    if (slice_axis == 0) {
      n_c = dims[0], n_a = dims[1], slice_stride = dims[1] * dims[2], row_stride = dims[2];
    } else {
      n_c = dims[1], n_a = dims[0], slice_stride = dims[2], row_stride = dims[1] * dims[2];
    }
  }
  Slices(int64_t rows, int64_t cols) : n_c(1), n_a(rows), n_b(cols), slice_stride(rows * cols), row_stride(cols) {}
  int64_t offset(int64_t s, int64_t a) const { return s * slice_stride + a * row_stride; }
};

// Linear interpolation of one axis: output j in [j0, j1) reads input (1 - f_j) * x[i_j] + f_j * x[i_j + 1] at
// pos_j = lam * j + kap, i_j = floor(pos_j), in an axis of length n; [j0, j1) are the outputs with a non-zero
// tap (-1 < pos < n). Positions use float32 as the XLA kernels do. Because lam > 0, the offset d = i_j - j is
// constant over runs of j: within a run the taps are a shifted contiguous block, so the loops vectorise.
struct Run {
  int64_t start, end, d;
};

struct AxisTaps {
  int64_t j0 = 0, j1 = 0;
  std::vector<int64_t> i;
  std::vector<float> f;
  std::vector<Run> runs;

  void set(float lam, float kap, int64_t m, int64_t n) {
    i.resize(std::max<int64_t>(m, 1));
    f.resize(std::max<int64_t>(m, 1));
    runs.clear();
    j0 = m, j1 = 0;
    for (int64_t j = 0; j < m; ++j) {
      const float pos = lam * static_cast<float>(j) + kap;
      if (!(pos > -1.0f && pos < static_cast<float>(n))) continue;
      const float fl = std::floor(pos);
      i[j] = static_cast<int64_t>(fl);
      f[j] = pos - fl;
      if (j1 <= j0 || i[j] - j != runs.back().d || j != runs.back().end) {
        runs.push_back({j, j + 1, i[j] - j});
      } else {
        runs.back().end = j + 1;
      }
      j0 = std::min(j0, j);
      j1 = j + 1;
    }
    if (j1 < j0) j0 = j1 = 0;
  }
};

// out[j] += scale * linear interpolation of the zero-padded row (row[0] and row[n + 1] are 0) at the taps.
inline void gather_add(const AxisTaps& t, const float* __restrict row, float* __restrict out, float scale) {
  const float* __restrict f = t.f.data();
  for (const Run& r : t.runs) {
    const float* __restrict x = row + r.d + 1;
    for (int64_t j = r.start; j < r.end; ++j) out[j] += scale * ((1.0f - f[j]) * x[j] + f[j] * x[j + 1]);
  }
}

// The transpose of gather_add (scale 1) into an unpadded row of length n: out[i_j] += (1 - f_j) * g[j] and
// out[i_j + 1] += f_j * g[j], dropping targets outside [0, n).
inline void scatter_into(const AxisTaps& t, const float* __restrict g, float* __restrict out, int64_t n) {
  const float* __restrict f = t.f.data();
  for (const Run& r : t.runs) {      // out[j + d] takes tap 0 of j and tap 1 of j - 1 (one pass)
    float* __restrict x = out + r.d;
    if (r.start + r.d >= 0 && r.start + r.d < n) x[r.start] += (1.0f - f[r.start]) * g[r.start];
    const int64_t lo = std::max(r.start + 1, -r.d), hi = std::min(r.end, n - r.d);
    for (int64_t j = lo; j < hi; ++j) x[j] += (1.0f - f[j]) * g[j] + f[j - 1] * g[j - 1];
    if (r.end + r.d >= 0 && r.end + r.d < n) x[r.end] += f[r.end - 1] * g[r.end - 1];
  }
}

// For the transpose of a row interpolation: the outputs p that read input row a (i_p = a - 1 or a) are
// [lo[a], hi[a]), because i_p grows with p. Input rows with any such output are [j0, j1).
struct SourceRows {
  AxisTaps taps;
  int64_t j0 = 0, j1 = 0;
  std::vector<int64_t> lo, hi;

  void set(float lam, float kap, int64_t m, int64_t n) {
    taps.set(lam, kap, m, n);
    j0 = j1 = 0;
    if (taps.j1 <= taps.j0) return;
    j0 = std::max<int64_t>(taps.i[taps.j0], 0);
    j1 = std::min<int64_t>(taps.i[taps.j1 - 1] + 2, n);
    lo.resize(n + 1);
    hi.resize(n + 1);
    int64_t p = taps.j0, q = taps.j0;
    for (int64_t a = j0; a < j1; ++a) {
      while (p < taps.j1 && taps.i[p] < a - 1) ++p;
      while (q < taps.j1 && taps.i[q] <= a) ++q;
      lo[a] = p, hi[a] = q;
    }
  }
};

// row[0 .. n_b + 1] = blend of slice rows i, i + 1 with weights (1 - f, f), zero-padded at both ends; only the
// entries that the column taps read are written.
void blend_rows(const float* slice_base, const Slices& sl, int64_t i, float f, const AxisTaps& cols,
                float* __restrict row) {
  const bool has0 = i >= 0 && i < sl.n_a, has1 = i + 1 >= 0 && i + 1 < sl.n_a;
  const float* __restrict r0 = slice_base + i * sl.row_stride;
  const float* __restrict r1 = r0 + sl.row_stride;
  const float w0 = 1.0f - f, w1 = f;
  row[0] = 0.0f;
  row[sl.n_b + 1] = 0.0f;
  if (cols.j1 <= cols.j0) return;
  const int64_t b0 = std::max<int64_t>(cols.i[cols.j0], 0);
  const int64_t b1 = std::min<int64_t>(cols.i[cols.j1 - 1] + 2, sl.n_b);
  if (has0 && has1) {
    for (int64_t b = b0; b < b1; ++b) row[b + 1] = w0 * r0[b] + w1 * r1[b];
  } else if (has0) {
    for (int64_t b = b0; b < b1; ++b) row[b + 1] = w0 * r0[b];
  } else {
    for (int64_t b = b0; b < b1; ++b) row[b + 1] = w1 * r1[b];
  }
}

// params (n_views, n_c, 3) for a source of slices sl; planes (n_views, H, W).
ffi::Error check(const Slices& sl, ffi::Span<const int64_t> pdims, ffi::Span<const int64_t> plane_dims) {
  if (pdims.size() != 3 || pdims[1] != sl.n_c || pdims[2] != 3)
    return ffi::Error::InvalidArgument("params must have shape (n_views, n_slices, 3)");
  if (plane_dims.size() != 3 || plane_dims[0] != pdims[0])
    return ffi::Error::InvalidArgument("planes must have shape (n_views, H, W)");
  return ffi::Error::Success();
}

// Runs work(k, v, s, j, rows, cols) for every view v, slice s and output row j of the slice's row taps, and
// done(k, v, s) after each slice's last row. Slices are taken in blocks, and each block serves every view
// before the next is read, so the volume passes through memory once per call, not once per view. Slices
// along axis 1 are rows of neighbouring memory (src[a, s, :]): their blocks are interleaved row by row, so
// they read (and write) contiguous runs instead of one row per page; k is the slice's slot in its block.
constexpr int64_t kBlock = 8;

template <class Rows = AxisTaps, class SetTaps, class Work, class Done>
void for_slice_rows(const Slices& sl, int64_t n_views, SetTaps set_taps, Work work, Done done) {
  std::array<Rows, kBlock> rows;
  std::array<AxisTaps, kBlock> cols;
  const int64_t block = sl.slice_stride < sl.row_stride ? kBlock : 1;
  for (int64_t s0 = 0; s0 < sl.n_c; s0 += block) {
    const int64_t m = std::min(block, sl.n_c - s0);
    for (int64_t v = 0; v < n_views; ++v) {
      int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
      for (int64_t k = 0; k < m; ++k) {
        set_taps(k, v, s0 + k, rows[k], cols[k]);
        if (rows[k].j1 > rows[k].j0) lo = std::min(lo, rows[k].j0), hi = std::max(hi, rows[k].j1);
      }
      for (int64_t j = lo; j < hi; ++j)
        for (int64_t k = 0; k < m; ++k)
          if (j >= rows[k].j0 && j < rows[k].j1) work(k, v, s0 + k, j, rows[k], cols[k]);
      for (int64_t k = 0; k < m; ++k) done(k, v, s0 + k, cols[k]);
    }
  }
}

// Copies acc into the output when XLA did not alias them (it normally does: the update is in place).
float* in_place(const ffi::Buffer<ffi::F32>& acc, ffi::ResultBuffer<ffi::F32>& out) {
  float* dst = out->typed_data();
  if (dst != acc.typed_data()) std::memcpy(dst, acc.typed_data(), acc.size_bytes());
  return dst;
}

ffi::Error ZoomSum(ffi::Buffer<ffi::F32> src, ffi::Buffer<ffi::F32> params, ffi::ResultBuffer<ffi::F32> planes,
                   int64_t slice_axis) {
  const Slices sl(src.dimensions(), slice_axis);
  if (auto err = check(sl, params.dimensions(), planes->dimensions()); err.failure()) return err;
  const int64_t nv = planes->dimensions()[0], h = planes->dimensions()[1], w = planes->dimensions()[2];
  float* out = planes->typed_data();
  std::fill(out, out + nv * h * w, 0.0f);
  const float* vol = src.typed_data();
  const float* par = params.typed_data();
  std::vector<float> row(sl.n_b + 2);
  for_slice_rows(
      sl, nv,
      [&](int64_t, int64_t v, int64_t s, AxisTaps& rows, AxisTaps& cols) {
        const float* q = par + 3 * (v * sl.n_c + s);
        rows.set(q[0], q[1], h, sl.n_a);
        cols.set(q[0], q[2], w, sl.n_b);
      },
      [&](int64_t, int64_t v, int64_t s, int64_t p, const AxisTaps& rows, const AxisTaps& cols) {
        blend_rows(vol + sl.offset(s, 0), sl, rows.i[p], rows.f[p], cols, row.data());
        gather_add(cols, row.data(), out + (v * h + p) * w, 1.0f);
      },
      [](int64_t, int64_t, int64_t, const AxisTaps&) {});
  return ffi::Error::Success();
}

// acc (aliased to out) += the transpose of ZoomSum applied to planes_ct. Slice row a takes the plane rows p
// with i_p = a (weight 1 - f_p) and i_p = a - 1 (weight f_p): they are summed in plane columns, then
// scattered once to the slice's columns (once per slice row rather than once per plane row).
ffi::Error ZoomSumT(ffi::Buffer<ffi::F32> acc, ffi::Buffer<ffi::F32> planes_ct, ffi::Buffer<ffi::F32> params,
                    ffi::ResultBuffer<ffi::F32> out, int64_t slice_axis) {
  const Slices sl(acc.dimensions(), slice_axis);
  if (auto err = check(sl, params.dimensions(), planes_ct.dimensions()); err.failure()) return err;
  float* vol = in_place(acc, out);
  const int64_t h = planes_ct.dimensions()[1], w = planes_ct.dimensions()[2];
  const float* pc = planes_ct.typed_data();
  const float* par = params.typed_data();
  std::vector<float> sum(w);
  for_slice_rows<SourceRows>(
      sl, planes_ct.dimensions()[0],
      [&](int64_t, int64_t v, int64_t s, SourceRows& rows, AxisTaps& cols) {
        const float* q = par + 3 * (v * sl.n_c + s);
        rows.set(q[0], q[1], h, sl.n_a);
        cols.set(q[0], q[2], w, sl.n_b);
      },
      [&](int64_t, int64_t v, int64_t s, int64_t a, const SourceRows& rows, const AxisTaps& cols) {
        float* __restrict x = sum.data();
        std::fill(x + cols.j0, x + cols.j1, 0.0f);
        for (int64_t p = rows.lo[a]; p < rows.hi[a]; ++p) {
          const float wp = rows.taps.i[p] == a ? 1.0f - rows.taps.f[p] : rows.taps.f[p];
          const float* __restrict g = pc + (v * h + p) * w;
          for (int64_t q = cols.j0; q < cols.j1; ++q) x[q] += wp * g[q];
        }
        scatter_into(cols, x, vol + sl.offset(s, a), sl.n_b);
      },
      [](int64_t, int64_t, int64_t, const AxisTaps&) {});
  return ffi::Error::Success();
}

// acc (aliased to out): slice s += Σ_views bilinear(plane, (a - kap_a)/lam, (b - kap_b)/lam) / lam^2.
ffi::Error ZoomGather(ffi::Buffer<ffi::F32> acc, ffi::Buffer<ffi::F32> planes, ffi::Buffer<ffi::F32> params,
                      ffi::ResultBuffer<ffi::F32> out, int64_t slice_axis) {
  const Slices sl(acc.dimensions(), slice_axis);
  if (auto err = check(sl, params.dimensions(), planes.dimensions()); err.failure()) return err;
  float* vol = in_place(acc, out);
  const int64_t h = planes.dimensions()[1], w = planes.dimensions()[2];
  const Slices pl(h, w);      // a plane, as one slice
  const float* pv = planes.typed_data();
  const float* par = params.typed_data();
  std::vector<float> row(w + 2);
  for_slice_rows(
      sl, planes.dimensions()[0],
      [&](int64_t, int64_t v, int64_t s, AxisTaps& rows, AxisTaps& cols) {
        // voxel index i reads the plane at (i - kap) / lam = inv * i - kap * inv
        const float* q = par + 3 * (v * sl.n_c + s);
        const float inv = 1.0f / q[0];
        rows.set(inv, -q[1] * inv, sl.n_a, h);
        cols.set(inv, -q[2] * inv, sl.n_b, w);
      },
      [&](int64_t, int64_t v, int64_t s, int64_t a, const AxisTaps& rows, const AxisTaps& cols) {
        const float lam = par[3 * (v * sl.n_c + s)];
        blend_rows(pv + v * h * w, pl, rows.i[a], rows.f[a], cols, row.data());
        gather_add(cols, row.data(), vol + sl.offset(s, a), 1.0f / (lam * lam));
      },
      [](int64_t, int64_t, int64_t, const AxisTaps&) {});
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoConeZoomSum, ZoomSum,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("slice_axis"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoConeZoomSumT, ZoomSumT,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("slice_axis"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LaminoConeZoomGather, ZoomGather,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("slice_axis"));
