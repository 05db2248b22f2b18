// Depthwise KxK convolution with stride 1 and "same" zero padding (K odd, padding (K - 1) / 2) on channels-last
// float32 maps, forward and backward, as MindSpore `ops.Custom` "aot" CPU kernels (mindcv_lite/kernels/__init__.py).
//
// Why: MindSpore 2.10's CPU grouped Conv2D was over half of pvt_v2_b0's inference time, and the rewrite as one
// multiply-add per tap over shifted windows doubled the model's peak memory, because its CPU graph runtime keeps
// every intermediate of a graph alive. One kernel writes only its output.
//
// Layouts: x, y, dy, dx (B, H, W, C); weight and its gradient (C, 1, K, K) as MindSpore's Conv2D; bias (C).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"

namespace {

// taps[(i * K + j) * C + c] = weight[c, 0, i, j], flipped (both axes) for the input gradient.
std::vector<float> Taps(const float *weight, int64_t chans, int64_t k, bool flip) {
  std::vector<float> taps(k * k * chans);
  for (int64_t c = 0; c < chans; ++c) {
    for (int64_t t = 0; t < k * k; ++t) {
      taps[(flip ? k * k - 1 - t : t) * chans + c] = weight[c * k * k + t];
    }
  }
  return taps;
}

// Inlined into the row loops below, so each ISA clone of a row loop gets its own vector code (no call per pixel).
__attribute__((always_inline)) inline void MultiplyAdd(float *__restrict out, const float *__restrict a,
                                                       const float *__restrict b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += a[i] * b[i];
}

__attribute__((always_inline)) inline void Add(float *__restrict out, const float *__restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += a[i];
}

// out row (b, h) = bias + sum over taps of the shifted input rows times the tap's per-channel weights.
MINDCV_VECTORIZE
void ConvolveRows(const float *x, const float *taps, const float *bias, float *out, int64_t height, int64_t width,
                  int64_t chans, int64_t k, int64_t first_row, int64_t last_row) {
  const int64_t pad = (k - 1) / 2;
  for (int64_t row = first_row; row < last_row; ++row) {
    const int64_t h = row % height;
    const float *image = x + (row - h) * width * chans;
    for (int64_t w = 0; w < width; ++w) {
      float *o = out + (row * width + w) * chans;
      if (bias != nullptr) {
        std::memcpy(o, bias, chans * sizeof(float));
      } else {
        std::memset(o, 0, chans * sizeof(float));
      }
      for (int64_t i = 0; i < k; ++i) {
        const int64_t hh = h + i - pad;
        if (hh < 0 || hh >= height) continue;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t ww = w + j - pad;
          if (ww < 0 || ww >= width) continue;
          MultiplyAdd(o, image + (hh * width + ww) * chans, taps + (i * k + j) * chans, chans);
        }
      }
    }
  }
}

// Adds rows [first_row, last_row) to sums: (K * K, C) products of dy with the tap-shifted x, then (C) sums of dy.
// Each row sums in float, the rows add in double, so the result does not depend on the batch size's rounding.
MINDCV_VECTORIZE
void SumWeightGradRows(const float *dy, const float *x, int64_t height, int64_t width, int64_t chans, int64_t k,
                       int64_t first_row, int64_t last_row, double *sums) {
  const int64_t pad = (k - 1) / 2, taps_size = k * k * chans;
  std::vector<float> row_sums(taps_size + chans);
  for (int64_t row = first_row; row < last_row; ++row) {
    std::fill(row_sums.begin(), row_sums.end(), 0.0f);
    const int64_t h = row % height;
    const float *image = x + (row - h) * width * chans;
    for (int64_t w = 0; w < width; ++w) {
      const float *grad = dy + (row * width + w) * chans;
      for (int64_t i = 0; i < k; ++i) {
        const int64_t hh = h + i - pad;
        if (hh < 0 || hh >= height) continue;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t ww = w + j - pad;
          if (ww < 0 || ww >= width) continue;
          MultiplyAdd(row_sums.data() + (i * k + j) * chans, grad, image + (hh * width + ww) * chans, chans);
        }
      }
      Add(row_sums.data() + taps_size, grad, chans);
    }
    for (int64_t t = 0; t < taps_size + chans; ++t) sums[t] += row_sums[t];
  }
}

// Checks the shapes both kernels share; returns false on anything but (B, H, W, C) maps and a (C, 1, K, K) weight.
bool ReadShapes(int *ndims, int64_t **shapes, int map, int weight, int64_t *batch, int64_t *height, int64_t *width,
                int64_t *chans, int64_t *k) {
  if (ndims[map] != 4 || ndims[weight] != 4) return false;
  *batch = shapes[map][0], *height = shapes[map][1], *width = shapes[map][2], *chans = shapes[map][3];
  *k = shapes[weight][2];
  return shapes[weight][0] == *chans && shapes[weight][1] == 1 && shapes[weight][3] == *k && *k % 2 == 1;
}

}  // namespace

// Inputs x, weight, bias; output y.
extern "C" int DepthwiseConvSame(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  int64_t batch, height, width, chans, k;
  if (nparam != 4 || !ReadShapes(ndims, shapes, 0, 1, &batch, &height, &width, &chans, &k)) return 1;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return 2;
  const float *x = static_cast<const float *>(params[0]);
  const std::vector<float> taps = Taps(static_cast<const float *>(params[1]), chans, k, false);
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  mindcv_lite::ParallelFor(batch * height, [&](int, int64_t begin, int64_t end) {
    ConvolveRows(x, taps.data(), bias, y, height, width, chans, k, begin, end);
  });
  return 0;
}

// Inputs dy, x, weight; outputs dx, dweight, dbias.
extern "C" int DepthwiseConvSameGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *stream, void *extra) {
  int64_t batch, height, width, chans, k;
  if (nparam != 6 || !ReadShapes(ndims, shapes, 1, 2, &batch, &height, &width, &chans, &k)) return 1;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return 2;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  float *dweight = static_cast<float *>(params[4]);
  float *dbias = static_cast<float *>(params[5]);
  const int64_t rows = batch * height, taps_size = k * k * chans;

  // dx: the same convolution of dy with the flipped kernel ("same" padding is its own transpose at stride 1).
  const std::vector<float> flipped = Taps(static_cast<const float *>(params[2]), chans, k, true);
  mindcv_lite::ParallelFor(rows, [&](int, int64_t begin, int64_t end) {
    ConvolveRows(dy, flipped.data(), nullptr, dx, height, width, chans, k, begin, end);
  });

  // dweight[c, i, j] = sum over pixels of dy * x shifted by tap (i, j); dbias = sum of dy; per thread, then summed.
  const int threads = mindcv_lite::NumThreads(rows);
  std::vector<double> sums(static_cast<size_t>(threads) * (taps_size + chans), 0.0);
  mindcv_lite::ParallelFor(rows, [&](int thread, int64_t begin, int64_t end) {
    SumWeightGradRows(dy, x, height, width, chans, k, begin, end, sums.data() + thread * (taps_size + chans));
  }, threads);
  for (int64_t c = 0; c < chans; ++c) {
    for (int64_t t = 0; t < k * k; ++t) {
      double total = 0.0;
      for (int thread = 0; thread < threads; ++thread) total += sums[thread * (taps_size + chans) + t * chans + c];
      dweight[c * k * k + t] = static_cast<float>(total);
    }
    double total = 0.0;
    for (int thread = 0; thread < threads; ++thread) total += sums[thread * (taps_size + chans) + taps_size + c];
    dbias[c] = static_cast<float>(total);
  }
  return 0;
}
