// The kernels of _cone_cpu.cc. This file is included twice there, into a baseline namespace and into one
// compiled for AVX2 + FMA, so that the loader can run the version the CPU supports. The handlers there check
// every buffer's rank and shape before they call a kernel: the kernels take their arguments as valid.

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

// Rows that share one pass over the column taps: the run bookkeeping is paid once for all of them, and they
// give the loops independent streams.
constexpr int64_t kRows = 4;

// outs[r][j] += scale * (linear interpolation of the zero-padded rows[r] (rows[r][0] and rows[r][n + 1] are
// 0) at the taps), for r < NR.
template <int NR>
inline void gather_rows(const AxisTaps& t, const float* const* rows, float* const* outs, float scale) {
  const float* __restrict f = t.f.data();
  for (const Run& run : t.runs) {
    const float* x[NR];
    for (int r = 0; r < NR; ++r) x[r] = rows[r] + run.d + 1;
    LAMINO_IVDEP
    for (int64_t j = run.start; j < run.end; ++j) {
      const float w0 = scale * (1.0f - f[j]), w1 = scale * f[j];
      for (int r = 0; r < NR; ++r) outs[r][j] += w0 * x[r][j] + w1 * x[r][j + 1];
    }
  }
}

// The transpose of gather_rows (scale 1) into unpadded rows of length n: outs[r][i_j] += (1 - f_j) * g[r][j]
// and outs[r][i_j + 1] += f_j * g[r][j], dropping targets outside [0, n).
template <int NR>
inline void scatter_rows(const AxisTaps& t, const float* const* g, float* const* outs, int64_t n) {
  const float* __restrict f = t.f.data();
  for (const Run& run : t.runs) {     // out[j + d] takes tap 0 of j and tap 1 of j - 1 (one pass)
    const int64_t d = run.d, first = run.start, last = run.end - 1;
    if (first + d >= 0 && first + d < n)
      for (int r = 0; r < NR; ++r) outs[r][first + d] += (1.0f - f[first]) * g[r][first];
    const int64_t lo = std::max(first + 1, -d), hi = std::min(run.end, n - d);
    LAMINO_IVDEP
    for (int64_t j = lo; j < hi; ++j) {
      const float w0 = 1.0f - f[j], w1 = f[j - 1];
      for (int r = 0; r < NR; ++r) outs[r][j + d] += w0 * g[r][j] + w1 * g[r][j - 1];
    }
    if (last + 1 + d >= 0 && last + 1 + d < n)
      for (int r = 0; r < NR; ++r) outs[r][last + 1 + d] += f[last] * g[r][last];
  }
}

// fn(std::integral_constant<int, nr>{}) for nr in 1 .. kRows: the row count as a compile-time constant.
template <class Fn>
inline void with_rows(int64_t nr, Fn fn) {
  switch (nr) {
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    default: return fn(std::integral_constant<int, 4>{});
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
  const float* __restrict r0 = has0 ? slice_base + i * sl.row_stride : nullptr;
  const float* __restrict r1 = has1 ? slice_base + (i + 1) * sl.row_stride : nullptr;
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

// Runs work(v, s, j0, j1, rows, cols) for every view v and slice s over the output rows of the slice's row
// taps (set by set_taps(v, s, rows, cols)), in chunks [j0, j1) of at most kRows rows. Slices are taken in
// blocks, and each block serves every view before the next is read, so the volume passes through memory once
// per call, not once per view. Slices along axis 1 are rows of neighbouring memory (src[a, s, :]): their
// blocks are interleaved chunk by chunk, so they read (and write) contiguous runs instead of one row per
// page. Slices along axis 0 are contiguous already and are taken one at a time. (Views as the inner loop, or
// blocks of slices along axis 0, measured slower.)
constexpr int64_t kBlock = 8;

template <class Rows = AxisTaps, class SetTaps, class Work>
void for_slice_rows(const Slices& sl, int64_t n_views, SetTaps set_taps, Work work) {
  std::array<Rows, kBlock> rows;
  std::array<AxisTaps, kBlock> cols;
  const int64_t block = sl.slice_stride < sl.row_stride ? kBlock : 1;
  for (int64_t s0 = 0; s0 < sl.n_c; s0 += block) {
    const int64_t m = std::min(block, sl.n_c - s0);
    for (int64_t v = 0; v < n_views; ++v) {
      int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
      for (int64_t k = 0; k < m; ++k) {
        set_taps(v, s0 + k, rows[k], cols[k]);
        if (rows[k].j1 > rows[k].j0) lo = std::min(lo, rows[k].j0), hi = std::max(hi, rows[k].j1);
      }
      for (int64_t j = lo; j < hi; j += kRows)
        for (int64_t k = 0; k < m; ++k) {
          const int64_t j0 = std::max(j, rows[k].j0), j1 = std::min(j + kRows, rows[k].j1);
          if (j0 < j1) work(v, s0 + k, j0, j1, rows[k], cols[k]);
        }
    }
  }
}

// Copies acc into the output when XLA did not alias them (it normally does: the update is in place).
float* in_place(const ffi::Buffer<ffi::F32>& acc, ffi::ResultBuffer<ffi::F32>& out) {
  float* dst = out->typed_data();
  if (dst != acc.typed_data() && acc.size_bytes() > 0) std::memcpy(dst, acc.typed_data(), acc.size_bytes());
  return dst;
}

// Output rows [j0, j1) of a separable interpolation: each blends the two input rows its row tap reads (from the
// slices `sl` at `base`), then adds the column interpolation of that, times scale, to out_row(j).
template <class OutRow>
void interpolate_rows(const float* base, const Slices& sl, int64_t j0, int64_t j1, const AxisTaps& rows,
                      const AxisTaps& cols, float scale, float* buf, OutRow out_row) {
  const float* in[kRows];
  float* outs[kRows];
  for (int64_t j = j0; j < j1; ++j) {
    float* row = buf + (j - j0) * (sl.n_b + 2);
    blend_rows(base, sl, rows.i[j], rows.f[j], cols, row);
    in[j - j0] = row, outs[j - j0] = out_row(j);
  }
  with_rows(j1 - j0, [&](auto nr) { gather_rows<nr>(cols, in, outs, scale); });
}

ffi::Error ZoomSum(ffi::Buffer<ffi::F32> src, ffi::Buffer<ffi::F32> params, ffi::ResultBuffer<ffi::F32> planes,
                   int64_t slice_axis) {
  const Slices sl(src.dimensions(), slice_axis);
  const int64_t nv = planes->dimensions()[0], h = planes->dimensions()[1], w = planes->dimensions()[2];
  float* out = planes->typed_data();
  std::fill(out, out + nv * h * w, 0.0f);
  const float* vol = src.typed_data();
  const float* par = params.typed_data();
  std::vector<float> buf(kRows * (sl.n_b + 2));
  for_slice_rows(
      sl, nv,
      [&](int64_t v, int64_t s, AxisTaps& rows, AxisTaps& cols) {
        const float* q = par + 3 * (v * sl.n_c + s);
        rows.set(q[0], q[1], h, sl.n_a);
        cols.set(q[0], q[2], w, sl.n_b);
      },
      [&](int64_t v, int64_t s, int64_t p0, int64_t p1, const AxisTaps& rows, const AxisTaps& cols) {
        interpolate_rows(vol + sl.offset(s, 0), sl, p0, p1, rows, cols, 1.0f, buf.data(),
                         [&](int64_t p) { return out + (v * h + p) * w; });
      });
  return ffi::Error::Success();
}

// acc (aliased to out) += the transpose of ZoomSum applied to planes_ct. Slice row a takes the plane rows p
// with i_p = a (weight 1 - f_p) and i_p = a - 1 (weight f_p): they are summed in plane columns, then
// scattered once to the slice's columns (once per slice row rather than once per plane row).
ffi::Error ZoomSumT(ffi::Buffer<ffi::F32> acc, ffi::Buffer<ffi::F32> planes_ct, ffi::Buffer<ffi::F32> params,
                    ffi::ResultBuffer<ffi::F32> out, int64_t slice_axis) {
  const Slices sl(acc.dimensions(), slice_axis);
  float* vol = in_place(acc, out);
  const int64_t h = planes_ct.dimensions()[1], w = planes_ct.dimensions()[2];
  const float* pc = planes_ct.typed_data();
  const float* par = params.typed_data();
  std::vector<float> buf(kRows * w);
  for_slice_rows<SourceRows>(
      sl, planes_ct.dimensions()[0],
      [&](int64_t v, int64_t s, SourceRows& rows, AxisTaps& cols) {
        const float* q = par + 3 * (v * sl.n_c + s);
        rows.set(q[0], q[1], h, sl.n_a);
        cols.set(q[0], q[2], w, sl.n_b);
      },
      [&](int64_t v, int64_t s, int64_t a0, int64_t a1, const SourceRows& rows, const AxisTaps& cols) {
        const float* in[kRows];
        float* outs[kRows];
        for (int64_t a = a0; a < a1; ++a) {
          float* __restrict x = buf.data() + (a - a0) * w;
          auto weight = [&](int64_t p) { return rows.taps.i[p] == a ? 1.0f - rows.taps.f[p] : rows.taps.f[p]; };
          const int64_t p0 = rows.lo[a], count = rows.hi[a] - p0;
          const float* __restrict g0 = pc + (v * h + p0) * w;
          if (count == 2) {           // the usual case, in one pass
            const float w0 = weight(p0), w1 = weight(p0 + 1);
            const float* __restrict g1 = g0 + w;
            for (int64_t q = cols.j0; q < cols.j1; ++q) x[q] = w0 * g0[q] + w1 * g1[q];
          } else {
            std::fill(x + cols.j0, x + cols.j1, 0.0f);
            for (int64_t p = p0; p < p0 + count; ++p) {
              const float wp = weight(p);
              const float* __restrict g = pc + (v * h + p) * w;
              for (int64_t q = cols.j0; q < cols.j1; ++q) x[q] += wp * g[q];
            }
          }
          in[a - a0] = x, outs[a - a0] = vol + sl.offset(s, a);
        }
        with_rows(a1 - a0, [&](auto nr) { scatter_rows<nr>(cols, in, outs, sl.n_b); });
      });
  return ffi::Error::Success();
}

// acc (aliased to out): slice s += Σ_views bilinear(plane, (a - kap_a)/lam, (b - kap_b)/lam) / lam^2.
ffi::Error ZoomGather(ffi::Buffer<ffi::F32> acc, ffi::Buffer<ffi::F32> planes, ffi::Buffer<ffi::F32> params,
                      ffi::ResultBuffer<ffi::F32> out, int64_t slice_axis) {
  const Slices sl(acc.dimensions(), slice_axis);
  float* vol = in_place(acc, out);
  const int64_t h = planes.dimensions()[1], w = planes.dimensions()[2];
  const Slices pl(h, w);      // a plane, as one slice
  const float* pv = planes.typed_data();
  const float* par = params.typed_data();
  std::vector<float> buf(kRows * (w + 2));
  for_slice_rows(
      sl, planes.dimensions()[0],
      [&](int64_t v, int64_t s, AxisTaps& rows, AxisTaps& cols) {
        // voxel index i reads the plane at (i - kap) / lam = inv * i - kap * inv
        const float* q = par + 3 * (v * sl.n_c + s);
        const float inv = 1.0f / q[0];
        rows.set(inv, -q[1] * inv, sl.n_a, h);
        cols.set(inv, -q[2] * inv, sl.n_b, w);
      },
      [&](int64_t v, int64_t s, int64_t a0, int64_t a1, const AxisTaps& rows, const AxisTaps& cols) {
        const float lam = par[3 * (v * sl.n_c + s)];
        interpolate_rows(pv + v * h * w, pl, a0, a1, rows, cols, 1.0f / (lam * lam), buf.data(),
                         [&](int64_t a) { return vol + sl.offset(s, a); });
      });
  return ffi::Error::Success();
}

// One bilinear tap set at fractional (row, col) of an (h, w) image, zero outside it (a one-pixel taper, as
// ``_shearwarp.sample_plane``): calls tap(offset, weight) for the taps that fall inside.
template <class Tap>
inline void bilinear_taps(float r, float c, int64_t h, int64_t w, Tap tap) {
  if (!(r > -1.0f && r < static_cast<float>(h) && c > -1.0f && c < static_cast<float>(w))) return;
  const float r0f = std::floor(r), c0f = std::floor(c);
  const int64_t r0 = static_cast<int64_t>(r0f), c0 = static_cast<int64_t>(c0f);
  const float fr = r - r0f, fc = c - c0f;
  const bool in_r0 = r0 >= 0, in_r1 = r0 + 1 < h, in_c0 = c0 >= 0, in_c1 = c0 + 1 < w;
  if (in_r0 && in_c0) tap(r0 * w + c0, (1.0f - fr) * (1.0f - fc));
  if (in_r0 && in_c1) tap(r0 * w + c0 + 1, (1.0f - fr) * fc);
  if (in_r1 && in_c0) tap((r0 + 1) * w + c0, fr * (1.0f - fc));
  if (in_r1 && in_c1) tap((r0 + 1) * w + c0 + 1, fr * fc);
}

// values (n, ...) = bilinear samples of images (n, h, w) at (rows, cols) (n, ...), zero outside.
ffi::Error BilinearSample(ffi::Buffer<ffi::F32> images, ffi::Buffer<ffi::F32> rows, ffi::Buffer<ffi::F32> cols,
                          ffi::ResultBuffer<ffi::F32> values) {
  const auto d = images.dimensions();
  const int64_t n = d[0], h = d[1], w = d[2], m = n > 0 ? rows.element_count() / n : 0;
  const float *img = images.typed_data(), *r = rows.typed_data(), *c = cols.typed_data();
  float* out = values->typed_data();
  for (int64_t v = 0; v < n; ++v) {
    const float* im = img + v * h * w;
    for (int64_t i = v * m; i < (v + 1) * m; ++i) {
      float acc = 0.0f;
      bilinear_taps(r[i], c[i], h, w, [&](int64_t o, float wt) { acc += wt * im[o]; });
      out[i] = acc;
    }
  }
  return ffi::Error::Success();
}

// images (n, h, w) = the transpose of BilinearSample applied to values (n, ...).
ffi::Error BilinearScatter(ffi::Buffer<ffi::F32> values, ffi::Buffer<ffi::F32> rows, ffi::Buffer<ffi::F32> cols,
                           ffi::ResultBuffer<ffi::F32> images) {
  const auto d = images->dimensions();
  const int64_t n = d[0], h = d[1], w = d[2], m = n > 0 ? values.element_count() / n : 0;
  const float *val = values.typed_data(), *r = rows.typed_data(), *c = cols.typed_data();
  float* img = images->typed_data();
  std::fill(img, img + n * h * w, 0.0f);
  for (int64_t v = 0; v < n; ++v) {
    float* im = img + v * h * w;
    for (int64_t i = v * m; i < (v + 1) * m; ++i)
      bilinear_taps(r[i], c[i], h, w, [&](int64_t o, float wt) { im[o] += wt * val[i]; });
  }
  return ffi::Error::Success();
}
