// Exact (erf) GELU, forward and backward, as MindSpore `ops.Custom` "aot" CPU kernels (mindcv_lite/kernels).
//
// Why: MindSpore 2.10 computes the exact GELU on CPU as Div, Erf, Add and Mul kernels (36% of pvt_tiny's
// inference time) and its CPU graph runtime keeps each of their outputs alive; one pass writes only the result.
// The backward needs only the input: dx = dy * (Phi(x) + x * phi(x)). The math is in gelu.h.
#include <cstdint>

#include "gelu.h"
#include "parallel.h"

namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per parallel work item

MINDCV_VECTORIZE
void GeluForward(const float *__restrict x, float *__restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = mindcv_lite::Gelu(x[i]);
}

MINDCV_VECTORIZE
void GeluBackward(const float *__restrict dy, const float *__restrict x, float *__restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mindcv_lite::GeluSlope(x[i]);
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
  if (nparam != 2) return mindcv_lite::kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return mindcv_lite::kNotFloat32;
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
  if (nparam != 3) return mindcv_lite::kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return mindcv_lite::kNotFloat32;
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
