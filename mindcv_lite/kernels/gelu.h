// The exact (erf) GELU's math, shared by the GELU kernel (gelu.cc) and the linear + GELU kernel (linear.cc).
//
// erfc is Numerical Recipes' `erfcc` (fractional error below 1.2e-7 everywhere), with exp.h's exp, which vectorises.
#ifndef MINDCV_LITE_KERNELS_GELU_H_
#define MINDCV_LITE_KERNELS_GELU_H_

#include "exp.h"

namespace mindcv_lite {

// Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt(2)) / 2.
__attribute__((always_inline)) inline float NormalCdf(float x) {
  const float z = (x < 0.0f ? -x : x) * 0.707106781f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                     t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f +
                     t * 0.17087277f))))))));
  const float half_erfc = 0.5f * t * Exp(poly - z * z);
  return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

// GELU(x) = x Phi(x).
__attribute__((always_inline)) inline float Gelu(float x) { return x * NormalCdf(x); }

// GELU'(x) = Phi(x) + x phi(x): the backward needs only the input.
__attribute__((always_inline)) inline float GeluSlope(float x) {
  const float density = 0.398942280f * Exp(-0.5f * x * x);  // phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
  return NormalCdf(x) + x * density;
}

}  // namespace mindcv_lite

#endif  // MINDCV_LITE_KERNELS_GELU_H_
