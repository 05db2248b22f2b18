// Multi-head attention softmax(scale Q K^T) V, forward and backward, as MindSpore `ops.Custom` "aot" CPU kernels
// (mindcv_lite/kernels/__init__.py), flash-style: the N x M scores of one (batch, head) live in a per-thread buffer.
//
// Why: MindSpore 2.10's CPU graph runtime keeps every intermediate of a graph alive, and the native formulation's
// (B, heads, N, M) scores, probabilities and their gradients are 68 MB each in PiT's first stage (batch 16, 730
// tokens, 2 heads): ~370 MB of a training step per block. Here the forward keeps only its output and the per-row
// log-sum-exp (B, heads, N); the backward recomputes the probabilities of one (batch, head) at a time.
//
// Layouts: q, out, dq (B, N, C); k, v, dk, dv (B, M, C); head h is channels [h * d, (h + 1) * d), d = C / heads, as
// the q/k/v projections write them, so no head split or merge is needed: the GEMMs read and write one head's columns
// through their leading dimension C. lse (B, heads, N) = log sum_j exp(scale q_i k_j), which also carries the head
// count (the aot interface passes shapes and pointers only; its attribute interface is a C++ class that would tie
// the build to MindSpore's headers).
//
// GEMMs: oneDNN's sgemm, from the libdnnl.so.3 MindSpore ships and has already loaded (resolved at run time, so the
// package builds without MindSpore). Each call runs on the calling thread; the (batch, head) pairs are split over
// threads.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>

#include "exp.h"
#include "gemm.h"
#include "parallel.h"

namespace {

using mindcv_lite::kBadShapes;
using mindcv_lite::kGemmFailed;
using mindcv_lite::kNoGemm;
using mindcv_lite::kNotFloat32;

using mindcv_lite::FindSgemm;
using mindcv_lite::Sgemm;

constexpr int kLanes = 16;  // independent partial maxima/sums, so the reductions vectorise without -ffast-math

__attribute__((always_inline)) inline float RowMax(const float *x, int64_t n) {
  float lanes[kLanes];
  for (int j = 0; j < kLanes; ++j) lanes[j] = -INFINITY;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] = lanes[j] < x[i + j] ? x[i + j] : lanes[j];
  }
  float result = -INFINITY;
  for (int j = 0; j < kLanes; ++j) result = result < lanes[j] ? lanes[j] : result;
  for (; i < n; ++i) result = result < x[i] ? x[i] : result;
  return result;
}

// x = exp(x - shift) in place; returns the sum of the results.
__attribute__((always_inline)) inline float ExpShiftedSum(float *x, int64_t n, float shift) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      x[i + j] = mindcv_lite::Exp(x[i + j] - shift);
      lanes[j] += x[i + j];
    }
  }
  float result = 0.0f;
  for (; i < n; ++i) {
    x[i] = mindcv_lite::Exp(x[i] - shift);
    result += x[i];
  }
  for (int j = 0; j < kLanes; ++j) result += lanes[j];
  return result;
}

// Rows of scores -> unnormalised probabilities exp(s - max) in place, lse = max + log(sum), inverse_sum = 1 / sum.
MINDCV_VECTORIZE
void ExpRows(float *scores, int64_t rows, int64_t cols, float *lse, float *inverse_sum) {
  for (int64_t i = 0; i < rows; ++i) {
    float *row = scores + i * cols;
    const float max = RowMax(row, cols);
    const float sum = ExpShiftedSum(row, cols, max);
    lse[i] = max + std::log(sum);
    inverse_sum[i] = 1.0f / sum;
  }
}

// Rows of scores -> probabilities exp(s - lse) in place.
MINDCV_VECTORIZE
void ProbabilityRows(float *scores, int64_t rows, int64_t cols, const float *lse) {
  for (int64_t i = 0; i < rows; ++i) {
    float *row = scores + i * cols;
    for (int64_t j = 0; j < cols; ++j) row[j] = mindcv_lite::Exp(row[j] - lse[i]);
  }
}

// dS = P * (dP - rowsum(dO * O)) in place of dP; dO and O rows are `head_dim` long, `stride` apart.
MINDCV_VECTORIZE
void ScoreGradRows(const float *probs, float *grad, int64_t rows, int64_t cols, const float *dout, const float *out,
                   int64_t head_dim, int64_t stride) {
  for (int64_t i = 0; i < rows; ++i) {
    float delta = 0.0f;
    for (int64_t c = 0; c < head_dim; ++c) delta += dout[i * stride + c] * out[i * stride + c];
    const float *p = probs + i * cols;
    float *g = grad + i * cols;
    for (int64_t j = 0; j < cols; ++j) g[j] = p[j] * (g[j] - delta);
  }
}

struct Shapes {
  int64_t batch, queries, keys, channels, heads, head_dim;
};

// q (B, N, C), k and v (B, M, C), out (B, N, C), lse (B, heads, N) at the given parameter indices; false on anything
// else.
bool ReadShapes(int *ndims, int64_t **shapes, int q, int k, int v, int out, int lse, Shapes *s) {
  for (int i : {q, k, v, out}) {
    if (ndims[i] != 3) return false;
  }
  if (ndims[lse] != 3) return false;
  s->batch = shapes[q][0], s->queries = shapes[q][1], s->channels = shapes[q][2];
  s->keys = shapes[k][1], s->heads = shapes[lse][1];
  if (s->heads <= 0 || s->channels % s->heads != 0) return false;
  s->head_dim = s->channels / s->heads;
  for (int i : {k, v}) {
    if (shapes[i][0] != s->batch || shapes[i][1] != s->keys || shapes[i][2] != s->channels) return false;
  }
  return shapes[out][0] == s->batch && shapes[out][1] == s->queries && shapes[out][2] == s->channels &&
         shapes[lse][0] == s->batch && shapes[lse][2] == s->queries;
}

// Runs fn(batch, head, matrices, row_values) for every (batch, head) pair on the process's CPUs, each thread with its
// scratch: `matrices` N x M float matrices one after the other, and N floats; returns kGemmFailed if any GEMM did. Threads take the next pair as they
// finish one, so a thread the OS preempts (a shared machine) does not hold up the others' half of the work.
template <typename Fn>
int ForEachHead(const Shapes &s, int matrices, Fn fn) {
  const int64_t pairs = s.batch * s.heads, matrices_size = matrices * s.queries * s.keys;
  const int threads = mindcv_lite::NumThreads(pairs);
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  mindcv_lite::ParallelFor(threads, [&](int, int64_t, int64_t) {
    std::unique_ptr<float[]> scratch(new float[matrices_size + s.queries]);
    for (int64_t pair = next++; pair < pairs && !failed; pair = next++) {
      if (fn(pair / s.heads, pair % s.heads, scratch.get(), scratch.get() + matrices_size) != 0) failed = true;
    }
  }, threads);
  return failed ? kGemmFailed : 0;
}

}  // namespace

// Inputs q, k, v; outputs out, lse.
extern "C" int MultiHeadAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                  void *stream, void *extra) {
  Shapes s;
  if (nparam != 5 || !ReadShapes(ndims, shapes, 0, 1, 2, 3, 4, &s)) return kBadShapes;
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *q = static_cast<const float *>(params[0]);
  const float *k = static_cast<const float *>(params[1]);
  const float *v = static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[3]);
  float *lse = static_cast<float *>(params[4]);
  const int64_t n = s.queries, m = s.keys, c = s.channels, d = s.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  return ForEachHead(s, 1, [&](int64_t b, int64_t h, float *scores, float *inverse_sum) {
    const float *qh = q + b * n * c + h * d, *kh = k + b * m * c + h * d, *vh = v + b * m * c + h * d;
    float *outh = out + b * n * c + h * d, *lseh = lse + (b * s.heads + h) * n;
    if (sgemm('N', 'T', n, m, d, scale, qh, c, kh, c, 0.0f, scores, m, nullptr) != 0) return 1;
    ExpRows(scores, n, m, lseh, inverse_sum);
    // out = exp(S - max) V, then each row divided by its sum (N x d multiplies instead of N x M)
    if (sgemm('N', 'N', n, d, m, 1.0f, scores, m, vh, c, 0.0f, outh, c, nullptr) != 0) return 1;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < d; ++j) outh[i * c + j] *= inverse_sum[i];
    }
    return 0;
  });
}

// Inputs dout, q, k, v, out, lse; outputs dq, dk, dv.
extern "C" int MultiHeadAttentionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                      void *stream, void *extra) {
  Shapes s;
  if (nparam != 9 || !ReadShapes(ndims, shapes, 1, 2, 3, 4, 5, &s) || !ReadShapes(ndims, shapes, 6, 7, 8, 0, 5, &s)) {
    return kBadShapes;
  }
  if (!mindcv_lite::AllFloat32(nparam, dtypes)) return kNotFloat32;
  const Sgemm sgemm = FindSgemm();
  if (sgemm == nullptr) return kNoGemm;
  const float *dout = static_cast<const float *>(params[0]);
  const float *q = static_cast<const float *>(params[1]);
  const float *k = static_cast<const float *>(params[2]);
  const float *v = static_cast<const float *>(params[3]);
  const float *out = static_cast<const float *>(params[4]);
  const float *lse = static_cast<const float *>(params[5]);
  float *dq = static_cast<float *>(params[6]);
  float *dk = static_cast<float *>(params[7]);
  float *dv = static_cast<float *>(params[8]);
  const int64_t n = s.queries, m = s.keys, c = s.channels, d = s.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  return ForEachHead(s, 2, [&](int64_t b, int64_t h, float *probs, float *) {
    float *grad = probs + n * m;
    const int64_t q_offset = b * n * c + h * d, kv_offset = b * m * c + h * d;
    // P = exp(scale Q K^T - lse)
    if (sgemm('N', 'T', n, m, d, scale, q + q_offset, c, k + kv_offset, c, 0.0f, probs, m, nullptr) != 0) return 1;
    ProbabilityRows(probs, n, m, lse + (b * s.heads + h) * n);
    // dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dO * O)); dQ = scale dS K; dK = scale dS^T Q
    if (sgemm('T', 'N', m, d, n, 1.0f, probs, m, dout + q_offset, c, 0.0f, dv + kv_offset, c, nullptr) != 0) return 1;
    if (sgemm('N', 'T', n, m, d, 1.0f, dout + q_offset, c, v + kv_offset, c, 0.0f, grad, m, nullptr) != 0) return 1;
    ScoreGradRows(probs, grad, n, m, dout + q_offset, out + q_offset, d, c);
    if (sgemm('N', 'N', n, d, m, scale, grad, m, k + kv_offset, c, 0.0f, dq + q_offset, c, nullptr) != 0) return 1;
    if (sgemm('T', 'N', m, d, n, scale, grad, m, q + q_offset, c, 0.0f, dk + kv_offset, c, nullptr) != 0) return 1;
    return 0;
  });
}
