// Strided KxK convolution with symmetric zero padding and bias, channels-last output, forward and backward, as
// MindSpore `ops.Custom` "aot" CPU kernels (mindcv_lite/kernels/__init__.py): the patch embeddings (PiT 16/8, PVT
// 4/4 and 2/2, PVTv2's overlapping 7/4 and 3/2) and the attention's spatial reductions (8/8 ... 1/1).
//
// Why: MindSpore 2.10's CPU Conv2D is pathologically slow for these shapes, and the rewrite as one blocked matmul
// (pad by concatenation, a 6-D Transpose into stride blocks, shifted windows) costs memory before anything runs: the
// CPU Transpose kernel allocates, at graph compile time, ~8 bytes per element of the tensor it permutes, kept for the
// life of the graph, and the graph runtime keeps every intermediate alive. Here im2col of a block of output rows goes
// into a per-thread buffer and one oneDNN sgemm per block writes the output rows, the bias added in the same pass.
//
// Layouts: x, dx (B, H, W, C_in), or (B, C_in, H, W) for the stems, which read the images as they arrive; y, dy
// (B, H_out, W_out, C_out); weight, dweight (C_out, C_in, K, K) as Conv2D; bias, dbias (C_out). The aot interface
// passes only shapes and pointers, and stride and padding do not follow from the shapes (floor division), so they
// arrive as a constant int32 input `geometry` = (stride, padding, channels_first) that the layer holds: one kernel
// for every geometry, in graph and pynative mode alike.
//
// The backward is two kernels, PatchConvGradInput (dx) and PatchConvGradWeight (dweight, dbias), so that a graph
// that needs no dx (the stem's images) drops that kernel as dead code, as it drops Conv2DBackpropInput.
//
// GEMMs: oneDNN's sgemm (gemm.h), each call on the calling thread; blocks of output rows are split over threads.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

#include "gemm.h"
#include "parallel.h"

namespace {

using mindcv_lite::kBadShapes;
using mindcv_lite::kGemmFailed;
using mindcv_lite::kNoGemm;
using mindcv_lite::kNotFloat32;

// Output pixels per im2col block (a whole number of output rows, which may span images: the spatial reductions'
// 7 x 7 maps): a few hundred GEMM rows keep the sgemm efficient, and the per-thread buffer stays a few megabytes for
// the largest patch (8 x 8 x 64 floats).
constexpr int64_t kBlockPixels = 256;

using mindcv_lite::FindSgemm;
using mindcv_lite::Sgemm;

struct Geometry {
  int64_t batch, height, width, in_chans, out_chans, k, stride, padding, out_height, out_width;
  bool channels_first;
  int64_t rows_per_block;  // output rows, counted over the batch: row b * out_height + ho

  int64_t patch() const { return k * k * in_chans; }  // one im2col row
  int64_t blocks() const { return (batch * out_height + rows_per_block - 1) / rows_per_block; }
  int64_t first_row(int64_t block) const { return block * rows_per_block; }
  int64_t num_rows(int64_t block) const { return std::min(rows_per_block, batch * out_height - first_row(block)); }
  // Offset of the block's first output pixel in y / dy, in pixels.
  int64_t first_pixel(int64_t block) const { return first_row(block) * out_width; }
};

// The im2col column of tap (i, j) of input channel c: (i, j, c) for channels-last input, (c, i, j), the weight's own
// order, for channels-first input.
inline int64_t Column(const Geometry &g, int64_t i, int64_t j, int64_t c) {
  return g.channels_first ? (c * g.k + i) * g.k + j : (i * g.k + j) * g.in_chans + c;
}

// The weight as the (C_out, patch) matrix in im2col column order, and back.
std::vector<float> WeightMatrix(const Geometry &g, const float *weight) {
  std::vector<float> matrix(g.out_chans * g.patch());
  for (int64_t o = 0; o < g.out_chans; ++o) {
    for (int64_t c = 0; c < g.in_chans; ++c) {
      for (int64_t t = 0; t < g.k * g.k; ++t) {
        matrix[o * g.patch() + Column(g, t / g.k, t % g.k, c)] = weight[(o * g.in_chans + c) * g.k * g.k + t];
      }
    }
  }
  return matrix;
}

// For every output pixel of `block` (row r of the block's im2col matrix), tap row i and input channel `c` (channels
// first) or all of them (channels last): fn(offset of the k taps' run in the im2col row, input offset of the run's
// first pixel, first valid tap j0, end tap j1, valid) with the input row h = ho * stride + i - padding inside the map
// (valid) or not; taps outside [j0, j1) read the zero padding. One walk for im2col and its transpose col2im.
template <typename Fn>
void ForEachRun(const Geometry &g, int64_t block, Fn &&fn) {
  const int64_t first = g.first_row(block), rows = g.num_rows(block);
  const int64_t run = g.channels_first ? g.k : g.k * g.in_chans;  // floats from tap j = 0 to j = k (one tap row)
  for (int64_t r = 0; r < rows * g.out_width; ++r) {
    const int64_t row = first + r / g.out_width, wo = r % g.out_width;
    const int64_t image = row / g.out_height, ho = row % g.out_height;
    const int64_t w0 = wo * g.stride - g.padding;
    const int64_t j0 = std::max<int64_t>(0, -w0), j1 = std::min<int64_t>(g.k, g.width - w0);
    for (int64_t i = 0; i < g.k; ++i) {
      const int64_t h = ho * g.stride + i - g.padding;
      const bool valid = h >= 0 && h < g.height && j0 < j1;
      if (g.channels_first) {
        for (int64_t c = 0; c < g.in_chans; ++c) {
          fn(r * g.patch() + Column(g, i, 0, c), ((image * g.in_chans + c) * g.height + h) * g.width + w0, j0, j1,
             valid, run);
        }
      } else {
        fn(r * g.patch() + Column(g, i, 0, 0), ((image * g.height + h) * g.width + w0) * g.in_chans, j0, j1, valid,
           run);
      }
    }
  }
}

// cols (pixels of the block, patch): the input values each output pixel's kernel covers, zeros in the padding.
void Im2col(const Geometry &g, const float *x, int64_t block, float *cols) {
  const int64_t tap = g.channels_first ? 1 : g.in_chans;  // floats per tap j
  ForEachRun(g, block, [&](int64_t col, int64_t in, int64_t j0, int64_t j1, bool valid, int64_t run) {
    float *dst = cols + col;
    if (!valid) {
      std::memset(dst, 0, run * sizeof(float));
      return;
    }
    std::memset(dst, 0, j0 * tap * sizeof(float));
    std::memcpy(dst + j0 * tap, x + in + j0 * tap, (j1 - j0) * tap * sizeof(float));
    std::memset(dst + j1 * tap, 0, (g.k - j1) * tap * sizeof(float));
  });
}

// dx += the im2col transpose of dcols (the padding's gradient is dropped).
void Col2imAdd(const Geometry &g, const float *dcols, int64_t block, float *dx) {
  const int64_t tap = g.channels_first ? 1 : g.in_chans;
  ForEachRun(g, block, [&](int64_t col, int64_t in, int64_t j0, int64_t j1, bool valid, int64_t) {
    if (!valid) return;
    const float *__restrict src = dcols + col + j0 * tap;
    float *__restrict dst = dx + in + j0 * tap;
    for (int64_t n = 0; n < (j1 - j0) * tap; ++n) dst[n] += src[n];
  });
}

// Reads and checks x, weight (or dweight), bias (or dbias; -1: none), geometry and the output-sized y (or dy) at the
// given parameter indices; false on anything else.
bool ReadGeometry(void **params, int *ndims, int64_t **shapes, const char **dtypes, int x, int weight, int bias,
                  int geometry, int y, Geometry *g) {
  if (ndims[x] != 4 || ndims[weight] != 4 || (bias >= 0 && ndims[bias] != 1) || ndims[geometry] != 1 ||
      shapes[geometry][0] != 3 ||
      ndims[y] != 4 || std::strcmp(dtypes[geometry], "int32") != 0) {
    return false;
  }
  const int32_t *values = static_cast<const int32_t *>(params[geometry]);
  g->stride = values[0], g->padding = values[1], g->channels_first = values[2] != 0;
  const int64_t *in = shapes[x], *w = shapes[weight], *out = shapes[y];
  g->batch = in[0];
  if (g->channels_first) {
    g->in_chans = in[1], g->height = in[2], g->width = in[3];
  } else {
    g->height = in[1], g->width = in[2], g->in_chans = in[3];
  }
  g->out_chans = w[0], g->k = w[2];
  if (g->stride <= 0 || g->padding < 0 || g->k <= 0 || w[1] != g->in_chans || w[3] != g->k ||
      (bias >= 0 && shapes[bias][0] != g->out_chans)) {
    return false;
  }
  g->out_height = (g->height + 2 * g->padding - g->k) / g->stride + 1;
  g->out_width = (g->width + 2 * g->padding - g->k) / g->stride + 1;
  if (g->height + 2 * g->padding < g->k || g->width + 2 * g->padding < g->k || out[0] != g->batch ||
      out[1] != g->out_height || out[2] != g->out_width || out[3] != g->out_chans) {
    return false;
  }
  // With overlapping kernels (K > stride) blocks two apart never touch the same input rows (see PatchConvGradInput)
  // once a block spans at least (K - stride) / stride output rows.
  const int64_t overlap_rows = (g->k - g->stride + g->stride - 1) / g->stride;
  g->rows_per_block = std::min(g->batch * g->out_height,
                               std::max({overlap_rows, (kBlockPixels + g->out_width - 1) / g->out_width}));
  return true;
}

bool Float32(const char **dtypes, std::initializer_list<int> indices) {
  for (int i : indices) {
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  return true;
}

}  // namespace

// Inputs x, weight, bias, geometry; output y.
extern "C" int PatchConv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                         void *) {
  Geometry g;
  if (nparam != 5 || !ReadGeometry(params, ndims, shapes, dtypes, 0, 1, 2, 3, 4, &g)) return kBadShapes;
  if (!Float32(dtypes, {0, 1, 2, 4})) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *x = static_cast<const float *>(params[0]);
  const std::vector<float> weight = WeightMatrix(g, static_cast<const float *>(params[1]));
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[4]);
  std::atomic<bool> failed{false};
  mindcv_lite::ParallelFor(g.blocks(), [&](int, int64_t begin, int64_t end) {
    std::unique_ptr<float[]> cols(new float[g.rows_per_block * g.out_width * g.patch()]);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t pixels = g.num_rows(block) * g.out_width;
      float *out = y + g.first_pixel(block) * g.out_chans;
      Im2col(g, x, block, cols.get());
      for (int64_t p = 0; p < pixels; ++p) std::memcpy(out + p * g.out_chans, bias, g.out_chans * sizeof(float));
      // y = cols weight^T + bias
      if (sgemm('N', 'T', pixels, g.out_chans, g.patch(), 1.0f, cols.get(), g.patch(), weight.data(), g.patch(), 1.0f,
                out, g.out_chans, nullptr) != 0) {
        failed = true;
      }
    }
  });
  return failed ? kGemmFailed : 0;
}

// Inputs dy, x, weight, geometry; output dx. dx is the col2im of dcols = dy weight, block by block. With overlapping
// kernels neighbouring blocks add into the same input rows, so the blocks run in two passes, even then odd blocks:
// within a pass no two blocks touch the same rows, and every dx element sums in a fixed order.
extern "C" int PatchConvGradInput(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                  void *, void *) {
  Geometry g;
  if (nparam != 5 || !ReadGeometry(params, ndims, shapes, dtypes, 1, 2, -1, 3, 0, &g)) return kBadShapes;
  if (!Float32(dtypes, {0, 1, 2, 4})) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *dy = static_cast<const float *>(params[0]);
  const std::vector<float> weight = WeightMatrix(g, static_cast<const float *>(params[2]));
  float *dx = static_cast<float *>(params[4]);
  std::memset(dx, 0, g.batch * g.height * g.width * g.in_chans * sizeof(float));
  const bool overlapping = g.k > g.stride;
  std::atomic<bool> failed{false};
  for (int pass = 0; pass < (overlapping ? 2 : 1); ++pass) {
    std::vector<int64_t> blocks;
    for (int64_t block = 0; block < g.blocks(); ++block) {
      if (!overlapping || block % 2 == pass) blocks.push_back(block);
    }
    mindcv_lite::ParallelFor(static_cast<int64_t>(blocks.size()), [&](int, int64_t begin, int64_t end) {
      std::unique_ptr<float[]> dcols(new float[g.rows_per_block * g.out_width * g.patch()]);
      for (int64_t n = begin; n < end; ++n) {
        const int64_t block = blocks[n], pixels = g.num_rows(block) * g.out_width;
        if (sgemm('N', 'N', pixels, g.patch(), g.out_chans, 1.0f, dy + g.first_pixel(block) * g.out_chans,
                  g.out_chans, weight.data(), g.patch(), 0.0f, dcols.get(), g.patch(), nullptr) != 0) {
          failed = true;
          continue;
        }
        Col2imAdd(g, dcols.get(), block, dx);
      }
    });
  }
  return failed ? kGemmFailed : 0;
}

// Inputs dy, x, weight (for its shape), geometry; outputs dweight, dbias: dweight = dy^T cols summed over the blocks, each thread into its own
// float partial sum (one sgemm per block, beta 1), the threads' partials then added in double in thread order; dbias
// the sum of dy, in double.
extern "C" int PatchConvGradWeight(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                   void *, void *) {
  Geometry g;
  if (nparam != 6 || !ReadGeometry(params, ndims, shapes, dtypes, 1, 4, 5, 3, 0, &g)) return kBadShapes;
  if (!Float32(dtypes, {0, 1, 4, 5})) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  float *dweight = static_cast<float *>(params[4]);
  float *dbias = static_cast<float *>(params[5]);
  const int64_t weight_size = g.out_chans * g.patch();
  const int threads = mindcv_lite::NumThreads(g.blocks());
  std::vector<float> weight_sums(threads * weight_size, 0.0f);
  std::vector<double> bias_sums(threads * g.out_chans, 0.0);
  std::atomic<bool> failed{false};
  mindcv_lite::ParallelFor(g.blocks(), [&](int thread, int64_t begin, int64_t end) {
    std::unique_ptr<float[]> cols(new float[g.rows_per_block * g.out_width * g.patch()]);
    float *weight_sum = weight_sums.data() + thread * weight_size;
    double *bias_sum = bias_sums.data() + thread * g.out_chans;
    for (int64_t block = begin; block < end; ++block) {
      const int64_t pixels = g.num_rows(block) * g.out_width;
      const float *grad = dy + g.first_pixel(block) * g.out_chans;
      Im2col(g, x, block, cols.get());
      if (sgemm('T', 'N', g.out_chans, g.patch(), pixels, 1.0f, grad, g.out_chans, cols.get(), g.patch(), 1.0f,
                weight_sum, g.patch(), nullptr) != 0) {
        failed = true;
      }
      for (int64_t p = 0; p < pixels; ++p) {
        for (int64_t o = 0; o < g.out_chans; ++o) bias_sum[o] += grad[p * g.out_chans + o];
      }
    }
  }, threads);
  std::vector<float> weight(weight_size);
  for (int64_t n = 0; n < weight_size; ++n) {
    double total = 0.0;
    for (int t = 0; t < threads; ++t) total += weight_sums[t * weight_size + n];
    weight[n] = static_cast<float>(total);
  }
  // back from im2col column order to (C_out, C_in, K, K)
  for (int64_t o = 0; o < g.out_chans; ++o) {
    for (int64_t c = 0; c < g.in_chans; ++c) {
      for (int64_t t = 0; t < g.k * g.k; ++t) {
        dweight[(o * g.in_chans + c) * g.k * g.k + t] = weight[o * g.patch() + Column(g, t / g.k, t % g.k, c)];
      }
    }
    double total = 0.0;
    for (int t = 0; t < threads; ++t) total += bias_sums[t * g.out_chans + o];
    dbias[o] = static_cast<float>(total);
  }
  return failed ? kGemmFailed : 0;
}
