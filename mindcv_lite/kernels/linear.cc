// Linear layer y = x W^T + b (nn.Dense's function), and the same followed by the exact GELU, forward and backward, as
// MindSpore `ops.Custom` "aot" CPU kernels (mindcv_lite/kernels/__init__.py).
//
// Why: MindSpore 2.10 runs `nn.Dense` on CPU as Reshape -> MatMul -> BiasAdd -> Reshape, and its CPU graph runtime
// keeps both the MatMul and the BiasAdd outputs alive (PVT's stage-1 fc1 at batch 16: 2 x 98 MB); its BiasAddGrad is
// 2-3x slower than a ReduceSum, and each of the four nodes costs compile time and compiler memory. Here the output is
// written once (its rows pre-filled with the bias, the GEMM adding x W^T onto them while they are in cache), in one
// node. LinearGelu also applies the GELU to each output tile in place right after its GEMM, so an MLP's fc1 output
// and its GELU's output (another 98 MB, alive at once with the first) are one buffer, written in one pass; its
// backward recomputes z = x W^T + b tile by tile for dz = dy GELU'(z) instead of keeping z.
//
// Layouts: x, dx (rows, in) with any leading dims flattened into rows; y, dy (rows, out); weight, dweight (out, in)
// as nn.Dense's `weight`; bias, dbias (out). Entry points: Linear / LinearGrad (with bias), LinearNoBias /
// LinearNoBiasGrad, LinearGelu / LinearGeluGrad (with bias).
//
// GEMMs: oneDNN's sgemm (gemm.h), each call on the calling thread. The forward and dx split rows into tiles that
// threads take as they finish one (a thread the OS preempts on a shared machine does not hold up the others); dweight
// splits its larger dimension into one block per thread, so no reduction is needed; dbias splits its columns, each
// summed over every row in the same order whatever the thread count.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "gelu.h"
#include "gemm.h"
#include "parallel.h"

namespace {

using mindcv_lite::kBadShapes;
using mindcv_lite::kGemmFailed;
using mindcv_lite::kNoGemm;
using mindcv_lite::kNotFloat32;

// Row tiles: output tiles of 256 KB stay in L2 between the bias fill and the GEMM, and every GEMM call has at least
// 512 rows (each call packs the weight again: 16-row tiles made (3136 x 512) -> 2048 1.5x slower than MatMul).
constexpr int64_t kTileFloats = 1 << 16, kMinTileRows = 512;
constexpr int64_t kSumRows = 256;         // dbias: rows summed in float before they join the double total

using mindcv_lite::FindSgemm;
using mindcv_lite::Sgemm;

struct Shapes {
  int64_t rows, in, out;
};

// x (..., in) at `x`, weight (out, in) at `weight`, y (..., out) with x's leading dims at `y`, bias (out) at `bias`
// (-1: none); false on anything else.
bool ReadShapes(int *ndims, int64_t **shapes, int x, int weight, int y, int bias, Shapes *s) {
  if (ndims[x] < 1 || ndims[y] != ndims[x] || ndims[weight] != 2) return false;
  s->in = shapes[x][ndims[x] - 1];
  s->out = shapes[weight][0];
  if (shapes[weight][1] != s->in || shapes[y][ndims[y] - 1] != s->out) return false;
  s->rows = 1;
  for (int i = 0; i + 1 < ndims[x]; ++i) {
    if (shapes[y][i] != shapes[x][i]) return false;
    s->rows *= shapes[x][i];
  }
  return bias < 0 || (ndims[bias] == 1 && shapes[bias][0] == s->out);
}

// fn(first_row, row_count) over tiles of `rows`, threads taking the next tile as they finish one; false if any fn did.
template <typename Fn>
bool ForEachRowTile(int64_t rows, int64_t row_floats, Fn fn) {
  const int64_t tile = std::max<int64_t>(kMinTileRows, kTileFloats / std::max<int64_t>(1, row_floats));
  const int64_t tiles = (rows + tile - 1) / tile;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  const int threads = mindcv_lite::NumThreads(tiles);
  mindcv_lite::ParallelFor(threads, [&](int, int64_t, int64_t) {
    for (int64_t t = next++; t < tiles && !failed; t = next++) {
      if (!fn(t * tile, std::min(tile, rows - t * tile))) failed = true;
    }
  }, threads);
  return !failed;
}

// Contiguous blocks of [0, size), one per thread, multiples of 16 (whole cache lines of a row) but the last.
template <typename Fn>
bool ForEachBlock(int64_t size, Fn fn) {
  const int threads = mindcv_lite::NumThreads((size + 15) / 16);
  const int64_t block = ((size + threads - 1) / threads + 15) / 16 * 16;
  std::atomic<bool> failed{false};
  mindcv_lite::ParallelFor(threads, [&](int thread, int64_t, int64_t) {
    const int64_t begin = std::min(size, thread * block), end = std::min(size, begin + block);
    if (begin < end && !fn(begin, end - begin)) failed = true;
  }, threads);
  return !failed;
}

// Rows [first, first + count) of y = x W^T + b (bias may be null).
bool ForwardTile(Sgemm sgemm, const Shapes &s, const float *x, const float *weight, const float *bias, int64_t first,
                 int64_t count, float *y) {
  float *tile = y + first * s.out;
  if (bias != nullptr) {
    for (int64_t r = 0; r < count; ++r) std::memcpy(tile + r * s.out, bias, s.out * sizeof(float));
  }
  return sgemm('N', 'T', count, s.out, s.in, 1.0f, x + first * s.in, s.in, weight, s.in, bias != nullptr ? 1.0f : 0.0f,
               tile, s.out, nullptr) == 0;
}

MINDCV_VECTORIZE
void GeluInPlace(float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = mindcv_lite::Gelu(y[i]);
}

// z <- dy GELU'(z)
MINDCV_VECTORIZE
void MultiplyByGeluSlope(const float *__restrict dy, float *__restrict z, int64_t n) {
  for (int64_t i = 0; i < n; ++i) z[i] = dy[i] * mindcv_lite::GeluSlope(z[i]);
}

// Inputs x, weight[, bias]; output y = x W^T + b, through the GELU when `gelu`.
int Forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool has_bias, bool gelu) {
  Shapes s;
  if (nparam != (has_bias ? 4 : 3) || !ReadShapes(ndims, shapes, 0, 1, nparam - 1, has_bias ? 2 : -1, &s)) {
    return kBadShapes;
  }
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *x = static_cast<const float *>(params[0]);
  const float *weight = static_cast<const float *>(params[1]);
  const float *bias = has_bias ? static_cast<const float *>(params[2]) : nullptr;
  float *y = static_cast<float *>(params[nparam - 1]);
  const bool ok = ForEachRowTile(s.rows, std::max(s.in, s.out), [&](int64_t first, int64_t count) {
    if (!ForwardTile(sgemm, s, x, weight, bias, first, count, y)) return false;
    if (gelu) GeluInPlace(y + first * s.out, count * s.out);
    return true;
  });
  return ok ? 0 : kGemmFailed;
}

// dbias[c] = sum over rows of dy[row, c] for c in [first, first + count): float sums of kSumRows rows, added in
// double, in row order.
MINDCV_VECTORIZE
void SumColumns(const float *dy, int64_t rows, int64_t cols, int64_t first, int64_t count, float *dbias) {
  std::unique_ptr<double[]> total(new double[count]());
  std::unique_ptr<float[]> partial(new float[count]);
  for (int64_t r0 = 0; r0 < rows; r0 += kSumRows) {
    std::fill(partial.get(), partial.get() + count, 0.0f);
    for (int64_t r = r0; r < std::min(rows, r0 + kSumRows); ++r) {
      const float *row = dy + r * cols + first;
      for (int64_t c = 0; c < count; ++c) partial[c] += row[c];
    }
    for (int64_t c = 0; c < count; ++c) total[c] += partial[c];
  }
  for (int64_t c = 0; c < count; ++c) dbias[first + c] = static_cast<float>(total[c]);
}

// Rows [first, first + count) of dx = dy W.
bool DataGradientTile(Sgemm sgemm, const Shapes &s, const float *dy, const float *weight, int64_t first, int64_t count,
                      float *dx) {
  return sgemm('N', 'N', count, s.in, s.out, 1.0f, dy + first * s.out, s.out, weight, s.in, 0.0f, dx + first * s.in,
               s.in, nullptr) == 0;
}

// dweight = dy^T x, blocks of its output rows, or of its columns when those are more; then dbias (may be null) = the
// column sums of dy.
bool ParameterGradients(Sgemm sgemm, const Shapes &s, const float *dy, const float *x, float *dweight, float *dbias) {
  const int64_t rows = s.rows, in = s.in, out = s.out;
  bool ok;
  if (out >= in) {
    ok = ForEachBlock(out, [&](int64_t first, int64_t count) {
      return sgemm('T', 'N', count, in, rows, 1.0f, dy + first, out, x, in, 0.0f, dweight + first * in, in,
                   nullptr) == 0;
    });
  } else {
    ok = ForEachBlock(in, [&](int64_t first, int64_t count) {
      return sgemm('T', 'N', out, count, rows, 1.0f, dy, out, x + first, in, 0.0f, dweight + first, in,
                   nullptr) == 0;
    });
  }
  if (dbias != nullptr) {
    ForEachBlock(out, [&](int64_t first, int64_t count) {
      SumColumns(dy, rows, out, first, count, dbias);
      return true;
    });
  }
  return ok;
}

// Inputs dy, x, weight; outputs dx, dweight[, dbias].
int Backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool has_bias) {
  Shapes s;
  if (nparam != (has_bias ? 6 : 5) || !ReadShapes(ndims, shapes, 1, 2, 0, has_bias ? 5 : -1, &s) ||
      !ReadShapes(ndims, shapes, 3, 4, 0, -1, &s)) {
    return kBadShapes;
  }
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *weight = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  const bool ok = ForEachRowTile(s.rows, std::max(s.in, s.out), [&](int64_t first, int64_t count) {
    return DataGradientTile(sgemm, s, dy, weight, first, count, dx);
  });
  const bool grads_ok = ok && ParameterGradients(sgemm, s, dy, x, static_cast<float *>(params[4]),
                                                 has_bias ? static_cast<float *>(params[5]) : nullptr);
  return grads_ok ? 0 : kGemmFailed;
}

// Inputs dy, x, weight, bias; outputs dx, dweight, dbias of y = GELU(x W^T + b). dz = dy GELU'(z) is computed tile by
// tile into a temporary (rows, out) buffer (z recomputed there), and each tile's dx = dz W right after, in cache.
int BackwardThroughGelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  Shapes s;
  if (nparam != 7 || !ReadShapes(ndims, shapes, 1, 2, 0, 3, &s) || !ReadShapes(ndims, shapes, 4, 5, 0, 6, &s)) {
    return kBadShapes;
  }
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *weight = static_cast<const float *>(params[2]);
  const float *bias = static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]);
  std::unique_ptr<float[]> dz(new float[s.rows * s.out]);
  const bool ok = ForEachRowTile(s.rows, std::max(s.in, s.out), [&](int64_t first, int64_t count) {
    if (!ForwardTile(sgemm, s, x, weight, bias, first, count, dz.get())) return false;
    MultiplyByGeluSlope(dy + first * s.out, dz.get() + first * s.out, count * s.out);
    return DataGradientTile(sgemm, s, dz.get(), weight, first, count, dx);
  });
  const bool grads_ok = ok && ParameterGradients(sgemm, s, dz.get(), x, static_cast<float *>(params[5]),
                                                 static_cast<float *>(params[6]));
  return grads_ok ? 0 : kGemmFailed;
}

}  // namespace

// Inputs x, weight, bias; output y.
extern "C" int Linear(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return Forward(nparam, params, ndims, shapes, dtypes, true, false);
}

// Inputs x, weight; output y.
extern "C" int LinearNoBias(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                            void *) {
  return Forward(nparam, params, ndims, shapes, dtypes, false, false);
}

// Inputs dy, x, weight; outputs dx, dweight, dbias.
extern "C" int LinearGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                          void *) {
  return Backward(nparam, params, ndims, shapes, dtypes, true);
}

// Inputs dy, x, weight; outputs dx, dweight.
extern "C" int LinearNoBiasGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                                void *) {
  return Backward(nparam, params, ndims, shapes, dtypes, false);
}

// Inputs x, weight, bias; output GELU(x W^T + b).
extern "C" int LinearGelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                          void *) {
  return Forward(nparam, params, ndims, shapes, dtypes, true, true);
}

// Inputs dy, x, weight, bias; outputs dx, dweight, dbias.
extern "C" int LinearGeluGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                              void *) {
  return BackwardThroughGelu(nparam, params, ndims, shapes, dtypes);
}
