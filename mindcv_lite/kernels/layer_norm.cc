// LayerNorm over the last axis, forward and backward, as MindSpore `ops.Custom` "aot" CPU kernels (mindcv_lite/kernels).
//
// Why: MindSpore 2.10's CPU LayerNormGrad is the largest op left in training (18-29% of the op time of pit_ti,
// pvt_tiny and pvt_v2_b0 at batch 16) and LayerNorm 15-26% of inference. The backward recomputes each row's mean and
// 1/std from x (two passes over a row that is in cache) instead of keeping them: memory matters more here.
#include <cmath>
#include <cstdint>
#include <memory>

#include "parallel.h"

namespace {

constexpr int kLanes = 8;           // independent float accumulators per row sum (vectorised, pairwise-like error)
constexpr int64_t kSumRows = 256;   // dgamma/dbeta: rows summed in float before they join the double total

// A row's mean and 1/std, the mean as shift + offset: x[0] + the mean of x - x[0]. The differences of nearby floats
// are exact, so neither the sum (rows far from zero, e.g. x + 100) nor xhat = ((x - shift) - offset) * rstd loses the
// digits a float mean would; the variance is the second pass about that mean.
struct Moments {
  float shift;
  float offset;
  float rstd;
};

MINDCV_VECTORIZE
Moments RowMoments(const float *__restrict x, int64_t width, float eps) {
  const float shift = x[0];
  float acc[kLanes] = {};
  const int64_t whole = width - width % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] - shift;
  }
  double sum = 0.0;
  for (int j = 0; j < kLanes; ++j) sum += acc[j];
  for (int64_t i = whole; i < width; ++i) sum += x[i] - shift;
  const float offset = static_cast<float>(sum / width);
  float sq[kLanes] = {};
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float d = (x[i + j] - shift) - offset;
      sq[j] += d * d;
    }
  }
  double var = 0.0;
  for (int j = 0; j < kLanes; ++j) var += sq[j];
  for (int64_t i = whole; i < width; ++i) {
    const float d = (x[i] - shift) - offset;
    var += static_cast<double>(d) * d;
  }
  return {shift, offset, static_cast<float>(1.0 / std::sqrt(var / width + eps))};
}

MINDCV_VECTORIZE
void ForwardRow(const float *__restrict x, const float *__restrict gamma, const float *__restrict beta, int64_t width,
                float eps, float *__restrict y) {
  const Moments m = RowMoments(x, width, eps);
  for (int64_t i = 0; i < width; ++i) y[i] = ((x[i] - m.shift) - m.offset) * m.rstd * gamma[i] + beta[i];
}

// dx of one row; adds dy * xhat and dy to the block's float partials of dgamma and dbeta.
MINDCV_VECTORIZE
void BackwardRow(const float *__restrict dy, const float *__restrict x, const float *__restrict gamma, int64_t width,
                 float eps, float *__restrict dx, float *__restrict dgamma, float *__restrict dbeta) {
  const Moments m = RowMoments(x, width, eps);
  float acc_g[kLanes] = {}, acc_gx[kLanes] = {};
  const int64_t whole = width - width % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float xhat = ((x[i + j] - m.shift) - m.offset) * m.rstd;
      const float g = dy[i + j] * gamma[i + j];
      acc_g[j] += g;
      acc_gx[j] += g * xhat;
    }
  }
  double sum_g = 0.0, sum_gx = 0.0;
  for (int j = 0; j < kLanes; ++j) {
    sum_g += acc_g[j];
    sum_gx += acc_gx[j];
  }
  for (int64_t i = whole; i < width; ++i) {
    const float xhat = ((x[i] - m.shift) - m.offset) * m.rstd;
    const float g = dy[i] * gamma[i];
    sum_g += g;
    sum_gx += g * xhat;
  }
  const float mean_g = static_cast<float>(sum_g / width), mean_gx = static_cast<float>(sum_gx / width);
  for (int64_t i = 0; i < width; ++i) {
    const float xhat = ((x[i] - m.shift) - m.offset) * m.rstd;
    dx[i] = m.rstd * (dy[i] * gamma[i] - mean_g - xhat * mean_gx);
    dgamma[i] += dy[i] * xhat;
    dbeta[i] += dy[i];
  }
}

struct Shape {
  int64_t rows;
  int64_t width;
};

Shape RowsOf(int ndim, const int64_t *shape) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < ndim; ++i) rows *= shape[i];
  return {rows, ndim > 0 ? shape[ndim - 1] : 1};
}

}  // namespace

// Inputs x (..., C), gamma (C,), beta (C,), eps (1,); output y (..., C).
extern "C" int LayerNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                         void *extra) {
  if (nparam != 5) return mindcv_lite::kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return mindcv_lite::kNotFloat32;
  const Shape s = RowsOf(ndims[0], shapes[0]);
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  mindcv_lite::ParallelFor(s.rows, [&](int, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) ForwardRow(x + r * s.width, gamma, beta, s.width, eps, y + r * s.width);
  });
  return 0;
}

// Inputs dy (..., C), x (..., C), gamma (C,), eps (1,); outputs dx (..., C), dgamma (C,), dbeta (C,). dgamma and dbeta
// are float sums over blocks of kSumRows rows, added in double in block order: the same bits for any thread count.
extern "C" int LayerNormGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  if (nparam != 7) return mindcv_lite::kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return mindcv_lite::kNotFloat32;
  const Shape s = RowsOf(ndims[1], shapes[1]);
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *gamma = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]);
  float *dgamma = static_cast<float *>(params[5]);
  float *dbeta = static_cast<float *>(params[6]);
  const int64_t blocks = (s.rows + kSumRows - 1) / kSumRows;
  // per block: dgamma partial, then dbeta partial
  std::unique_ptr<float[]> partials(new float[blocks * 2 * s.width]());
  mindcv_lite::ParallelFor(blocks, [&](int, int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float *pgamma = partials.get() + b * 2 * s.width;
      for (int64_t r = b * kSumRows; r < std::min(s.rows, (b + 1) * kSumRows); ++r) {
        const int64_t at = r * s.width;
        BackwardRow(dy + at, x + at, gamma, s.width, eps, dx + at, pgamma, pgamma + s.width);
      }
    }
  });
  std::unique_ptr<double[]> total(new double[2 * s.width]());
  for (int64_t b = 0; b < blocks; ++b) {
    const float *p = partials.get() + b * 2 * s.width;
    for (int64_t c = 0; c < 2 * s.width; ++c) total[c] += p[c];
  }
  for (int64_t c = 0; c < s.width; ++c) {
    dgamma[c] = static_cast<float>(total[c]);
    dbeta[c] = static_cast<float>(total[s.width + c]);
  }
  return 0;
}
