// Depthwise KxK convolution with a channel multiplier r, stride 1 or 2 and zero padding K / 2 (K odd or even) on
// channels-last float32 maps, forward and backward, as MindSpore `ops.Custom` "aot" CPU kernels
// (mindcv_lite/kernels/__init__.py): PVTv2's 3x3 MLP convolution (stride 1, r 1) and PiT's pooling (3x3, stride 2,
// r 2).
//
// Why: MindSpore 2.10's CPU grouped Conv2D was over half of pvt_v2_b0's inference time, and the rewrite as one
// multiply-add per tap over shifted windows doubled the model's peak memory (its CPU graph runtime keeps every
// intermediate of a graph alive) and was a third of pit_ti's compile time (a node per tap). One kernel is one node
// and writes only its output.
//
// Layouts: x, dx (B, H, W, C); y, dy (B, H_out, W_out, C * r); weight and its gradient (C * r, 1, K, K) as
// MindSpore's grouped Conv2D, output channel c * r + q reading input channel c; bias (C * r). An aot kernel sees only
// shapes, so the stride is in the entry point's name: DepthwiseConvStride1/2 and DepthwiseConvStride1/2Grad.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel.h"

namespace {

// The taps of one axis as runs: target coordinate t meets count[t] taps, first_tap[t] + n * tap_step for n < count[t],
// which read source coordinates first_source[t] + n. Forward (target an output o, source the input
// o * stride + tap - K / 2): the output and the weight gradient. Transposed (target an input, source each output that
// reads it): the input gradient, a gather, so rows can run in parallel; its taps go down by the stride, so its sources
// go up one at a time, the forward's memory order. Arithmetic runs, not a list of (tap, source) pairs: a load per tap
// made the stride-1 kernel 10% slower (56x56x256).
struct Axis {
  std::vector<int64_t> first_tap, count, first_source;
  int64_t tap_step;

  int64_t size() const { return static_cast<int64_t>(count.size()); }
};

Axis MakeAxis(int64_t in_size, int64_t out_size, int64_t k, int64_t stride, bool transposed) {
  Axis axis{{}, {}, {}, transposed ? -stride : 1};
  for (int64_t target = 0; target < (transposed ? in_size : out_size); ++target) {
    int64_t count = 0, first_tap = 0, first_source = 0;
    for (int64_t step = 0; step < k; ++step) {
      const int64_t tap = transposed ? k - 1 - step : step;
      int64_t source;
      bool meets;
      if (transposed) {  // output o reads this input through `tap` when o * stride = target - tap + K / 2
        const int64_t offset = target - tap + k / 2;
        source = offset / stride;
        meets = offset >= 0 && offset % stride == 0 && source < out_size;
      } else {
        source = target * stride + tap - k / 2;
        meets = source >= 0 && source < in_size;
      }
      if (meets && count++ == 0) first_tap = tap, first_source = source;
    }
    axis.first_tap.push_back(first_tap);
    axis.count.push_back(count);
    axis.first_source.push_back(first_source);
  }
  return axis;
}

struct Geometry {
  int64_t batch, height, width, chans, multiplier, k, out_height, out_width;
  Axis out_rows, out_cols, in_rows, in_cols;  // forward axes (targets are outputs), transposed axes (inputs)
};

// For every column w of the target row `row` (b * rows.size() + h): start(w), then fn(w, tap, source pixel, r) for
// every tap i * K + j that meets a pixel of the source map, (b * source_height + hh) * source_width + ww. One
// tap-window walk for the forward, the weight gradient and (transposed) the input gradient; a pixel's start and its
// taps run back to back while its vector is in L1 (a separate pass over the row was slower). r is the channel
// multiplier, a compile-time constant for PVTv2's 1 and PiT's 2: the vector loops over a runtime r did not vectorise
// (PiT's pooling 7x slower) and a runtime branch on r == 1 cost the weight gradient 6%.
template <typename Start, typename Fn>
__attribute__((always_inline)) inline void ForEachTap(const Axis &rows, const Axis &cols, int64_t k,
                                                      int64_t multiplier, int64_t row, int64_t source_height,
                                                      int64_t source_width, Start &&start, Fn &&fn) {
  const int64_t image = row / rows.size(), h = row % rows.size();
  const int64_t row_taps = rows.count[h], first_i = rows.first_tap[h];
  const int64_t first_pixel = (image * source_height + rows.first_source[h]) * source_width;
  const auto walk = [&](auto r) __attribute__((always_inline)) {
    for (int64_t w = 0; w < cols.size(); ++w) {
      start(w);
      const int64_t col_taps = cols.count[w], first_j = cols.first_tap[w], first_ww = cols.first_source[w];
      for (int64_t a = 0; a < row_taps; ++a) {
        const int64_t i = first_i + a * rows.tap_step, pixel = first_pixel + a * source_width + first_ww;
        for (int64_t b = 0; b < col_taps; ++b) fn(w, i * k + first_j + b * cols.tap_step, pixel + b, r);
      }
    }
  };
  if (multiplier == 1) {
    walk(std::integral_constant<int64_t, 1>());
  } else if (multiplier == 2) {
    walk(std::integral_constant<int64_t, 2>());
  } else {
    walk(multiplier);
  }
}

// taps[t * C * r + n] = weight[n, 0, t / K, t % K]: one contiguous output-channel vector per tap.
std::vector<float> Taps(const float *weight, int64_t out_chans, int64_t k) {
  std::vector<float> taps(k * k * out_chans);
  for (int64_t n = 0; n < out_chans; ++n) {
    for (int64_t t = 0; t < k * k; ++t) taps[t * out_chans + n] = weight[n * k * k + t];
  }
  return taps;
}

// The vector helpers are inlined into the row loops below, so each ISA clone of a row loop gets its own vector code.
// out[c * r + q] += a[c] * b[c * r + q]: input-channel vector a times output-channel vector b.
__attribute__((always_inline)) inline void MultiplyAdd(float *__restrict out, const float *__restrict a,
                                                       const float *__restrict b, int64_t chans, int64_t r) {
  for (int64_t c = 0; c < chans; ++c) {
    for (int64_t q = 0; q < r; ++q) out[c * r + q] += a[c] * b[c * r + q];
  }
}

// out[c] += sum over q of a[c * r + q] * b[c * r + q]: output-channel vectors summed back onto their input channel.
__attribute__((always_inline)) inline void MultiplyAddReduce(float *__restrict out, const float *__restrict a,
                                                             const float *__restrict b, int64_t chans, int64_t r) {
  for (int64_t c = 0; c < chans; ++c) {
    float sum = 0.0f;
    for (int64_t q = 0; q < r; ++q) sum += a[c * r + q] * b[c * r + q];
    out[c] += sum;
  }
}

__attribute__((always_inline)) inline void Add(float *__restrict out, const float *__restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += a[i];
}

// y row (b, h_out) = bias + sum over taps of input pixels times the tap's per-output-channel weights.
MINDCV_VECTORIZE
void ConvolveRows(const float *x, const float *taps, const float *bias, float *y, const Geometry &g, int64_t first_row,
                  int64_t last_row) {
  const int64_t out_chans = g.chans * g.multiplier;
  for (int64_t row = first_row; row < last_row; ++row) {
    float *out = y + row * g.out_width * out_chans;
    ForEachTap(
        g.out_rows, g.out_cols, g.k, g.multiplier, row, g.height, g.width,
        [&](int64_t w) { std::memcpy(out + w * out_chans, bias, out_chans * sizeof(float)); },
        [&](int64_t w, int64_t tap, int64_t pixel, auto r) {
          MultiplyAdd(out + w * out_chans, x + pixel * g.chans, taps + tap * out_chans, g.chans, r);
        });
  }
}

// dx row (b, h) = sum over the taps and output pixels that read it of dy times the tap's weights, summed over the r
// output channels of each input channel.
MINDCV_VECTORIZE
void InputGradRows(const float *dy, const float *taps, float *dx, const Geometry &g, int64_t first_row,
                   int64_t last_row) {
  const int64_t out_chans = g.chans * g.multiplier;
  for (int64_t row = first_row; row < last_row; ++row) {
    float *out = dx + row * g.width * g.chans;
    ForEachTap(
        g.in_rows, g.in_cols, g.k, g.multiplier, row, g.out_height, g.out_width,
        [&](int64_t w) { std::memset(out + w * g.chans, 0, g.chans * sizeof(float)); },
        [&](int64_t w, int64_t tap, int64_t pixel, auto r) {
          MultiplyAddReduce(out + w * g.chans, dy + pixel * out_chans, taps + tap * out_chans, g.chans, r);
        });
  }
}

// Adds output rows [first_row, last_row) to sums: (K * K, C * r) products of dy with the input pixel each tap read,
// then (C * r) sums of dy. Each row sums in float, the rows add in double, so the result does not depend on the batch
// size's rounding.
MINDCV_VECTORIZE
void SumWeightGradRows(const float *dy, const float *x, const Geometry &g, int64_t first_row, int64_t last_row,
                       double *sums) {
  const int64_t out_chans = g.chans * g.multiplier, taps_size = g.k * g.k * out_chans;
  std::vector<float> row_sums(taps_size + out_chans);
  for (int64_t row = first_row; row < last_row; ++row) {
    std::fill(row_sums.begin(), row_sums.end(), 0.0f);
    const float *grad = dy + row * g.out_width * out_chans;
    ForEachTap(
        g.out_rows, g.out_cols, g.k, g.multiplier, row, g.height, g.width,
        [&](int64_t w) { Add(row_sums.data() + taps_size, grad + w * out_chans, out_chans); },
        [&](int64_t w, int64_t tap, int64_t pixel, auto r) {
          MultiplyAdd(row_sums.data() + tap * out_chans, x + pixel * g.chans, grad + w * out_chans, g.chans, r);
        });
    for (int64_t t = 0; t < taps_size + out_chans; ++t) sums[t] += row_sums[t];
  }
}

// Reads and checks the shapes: x (B, H, W, C), weight (C * r, 1, K, K), bias and dbias (C * r), and the output-sized
// map (B, (H + 2 * (K / 2) - K) / stride + 1, ..., C * r). False on anything else.
bool ReadGeometry(int *ndims, int64_t **shapes, int x, int weight, int bias, int out, int64_t stride, Geometry *g) {
  if (ndims[x] != 4 || ndims[weight] != 4 || ndims[bias] != 1 || ndims[out] != 4) return false;
  const int64_t *in = shapes[x], *w = shapes[weight];
  g->batch = in[0], g->height = in[1], g->width = in[2], g->chans = in[3], g->k = w[2];
  if (g->chans <= 0 || g->k <= 0 || w[0] % g->chans != 0 || w[1] != 1 || w[3] != g->k) return false;
  g->multiplier = w[0] / g->chans;
  g->out_height = (g->height + 2 * (g->k / 2) - g->k) / stride + 1;
  g->out_width = (g->width + 2 * (g->k / 2) - g->k) / stride + 1;
  const int64_t *o = shapes[out];
  if (shapes[bias][0] != w[0] || o[0] != g->batch || o[1] != g->out_height || o[2] != g->out_width || o[3] != w[0]) {
    return false;
  }
  g->out_rows = MakeAxis(g->height, g->out_height, g->k, stride, false);
  g->out_cols = MakeAxis(g->width, g->out_width, g->k, stride, false);
  g->in_rows = MakeAxis(g->height, g->out_height, g->k, stride, true);
  g->in_cols = MakeAxis(g->width, g->out_width, g->k, stride, true);
  return true;
}

// Inputs x, weight, bias; output y.
int Forward(int64_t stride, int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  Geometry g;
  if (nparam != 4 || !ReadGeometry(ndims, shapes, 0, 1, 2, 3, stride, &g)) return mindcv_lite::kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return mindcv_lite::kNotFloat32;
  const float *x = static_cast<const float *>(params[0]);
  const std::vector<float> taps = Taps(static_cast<const float *>(params[1]), g.chans * g.multiplier, g.k);
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  mindcv_lite::ParallelFor(g.batch * g.out_height, [&](int, int64_t begin, int64_t end) {
    ConvolveRows(x, taps.data(), bias, y, g, begin, end);
  });
  return 0;
}

// Inputs dy, x, weight; outputs dx, dweight, dbias.
int Backward(int64_t stride, int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  Geometry g;
  if (nparam != 6 || !ReadGeometry(ndims, shapes, 1, 2, 5, 0, stride, &g)) return mindcv_lite::kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return mindcv_lite::kNotFloat32;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  float *dweight = static_cast<float *>(params[4]);
  float *dbias = static_cast<float *>(params[5]);
  const int64_t out_chans = g.chans * g.multiplier, kk = g.k * g.k, sums_size = (kk + 1) * out_chans;

  const std::vector<float> taps = Taps(static_cast<const float *>(params[2]), out_chans, g.k);
  mindcv_lite::ParallelFor(g.batch * g.height, [&](int, int64_t begin, int64_t end) {
    InputGradRows(dy, taps.data(), dx, g, begin, end);
  });

  // dweight and dbias: per-thread double sums over the output rows, then added up.
  const int64_t rows = g.batch * g.out_height;
  const int threads = mindcv_lite::NumThreads(rows);
  std::vector<double> sums(static_cast<size_t>(threads) * sums_size, 0.0);
  mindcv_lite::ParallelFor(rows, [&](int thread, int64_t begin, int64_t end) {
    SumWeightGradRows(dy, x, g, begin, end, sums.data() + thread * sums_size);
  }, threads);
  for (int64_t n = 0; n < out_chans; ++n) {
    for (int64_t t = 0; t <= kk; ++t) {
      double total = 0.0;
      for (int thread = 0; thread < threads; ++thread) total += sums[thread * sums_size + t * out_chans + n];
      (t < kk ? dweight[n * kk + t] : dbias[n]) = static_cast<float>(total);
    }
  }
  return 0;
}

}  // namespace

#define MINDCV_DEPTHWISE_CONV_ENTRY_POINTS(STRIDE)                                                                  \
  extern "C" int DepthwiseConvStride##STRIDE(int nparam, void **params, int *ndims, int64_t **shapes,               \
                                             const char **dtypes, void *, void *) {                                 \
    return Forward(STRIDE, nparam, params, ndims, shapes, dtypes);                                                  \
  }                                                                                                                 \
  extern "C" int DepthwiseConvStride##STRIDE##Grad(int nparam, void **params, int *ndims, int64_t **shapes,         \
                                                   const char **dtypes, void *, void *) {                           \
    return Backward(STRIDE, nparam, params, ndims, shapes, dtypes);                                                 \
  }

MINDCV_DEPTHWISE_CONV_ENTRY_POINTS(1)
MINDCV_DEPTHWISE_CONV_ENTRY_POINTS(2)
