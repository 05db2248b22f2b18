// Exact (erf) GELU, forward and backward, as MindSpore `ops.Custom` "aot" CPU kernels (mindcv_lite/kernels).
//
// Why: MindSpore 2.10 computes the exact GELU on CPU as Div, Erf, Add and Mul kernels (36% of pvt_tiny's
// inference time) and its CPU graph runtime keeps each of their outputs alive; one pass writes only the result.
// The backward needs only the input: dx = dy * (Phi(x) + x * phi(x)).
//
// erfc is Numerical Recipes' `erfcc` (fractional error below 1.2e-7 everywhere), with exp.h's exp, which vectorises.
#include <cstdint>

#include "exp.h"
#include "parallel.h"

namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per parallel work item

// Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt(2)) / 2.
inline float NormalCdf(float x) {
  const float z = (x < 0.0f ? -x : x) * 0.707106781f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                     t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f +
                     t * 0.17087277f))))))));
  const float half_erfc = 0.5f * t * mindcv_lite::Exp(poly - z * z);
  return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

MINDCV_VECTORIZE
void GeluForward(const float *__restrict x, float *__restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * NormalCdf(x[i]);
}

MINDCV_VECTORIZE
void GeluBackward(const float *__restrict dy, const float *__restrict x, float *__restrict dx, int64_t n) {
  const float inv_sqrt_2pi = 0.398942280f;
  for (int64_t i = 0; i < n; ++i) {
    const float density = inv_sqrt_2pi * mindcv_lite::Exp(-0.5f * x[i] * x[i]);
    dx[i] = dy[i] * (NormalCdf(x[i]) + x[i] * density);
  }
}

int64_t NumElements(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

}  // namespace

// Input x; output GELU(x).
extern "C" int GeluExact(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                         void *extra) {
  if (nparam != 2) return 1;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return 2;
  const int64_t n = NumElements(ndims[0], shapes[0]);
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  mindcv_lite::ParallelFor((n + kChunk - 1) / kChunk, [&](int, int64_t begin, int64_t end) {
    GeluForward(x + begin * kChunk, y + begin * kChunk, std::min(n, end * kChunk) - begin * kChunk);
  });
  return 0;
}

// Inputs dy, x; output dx.
extern "C" int GeluExactGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  if (nparam != 3) return 1;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return 2;
  const int64_t n = NumElements(ndims[0], shapes[0]);
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  mindcv_lite::ParallelFor((n + kChunk - 1) / kChunk, [&](int, int64_t begin, int64_t end) {
    GeluBackward(dy + begin * kChunk, x + begin * kChunk, dx + begin * kChunk,
                 std::min(n, end * kChunk) - begin * kChunk);
  });
  return 0;
}
