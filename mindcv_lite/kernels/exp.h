// The exp of the CPU kernels: a float32 exp that the compiler vectorises (std::exp is a library call per element).
#ifndef MINDCV_LITE_KERNELS_EXP_H_
#define MINDCV_LITE_KERNELS_EXP_H_

#include <cstdint>
#include <cstring>

namespace mindcv_lite {

// exp(x) to ~1 ulp (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, a degree-5 minimax polynomial, times 2^n); 0 below
// -87.3, where exp leaves float32's normal range, and arguments above 88 are clamped to 88 (no overflow to inf).
__attribute__((always_inline)) inline float Exp(float x) {
  const float clamped = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
  const float n = (clamped * 1.44269504f + magic) - magic;
  const float r = (clamped - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return x < -87.3f ? 0.0f : p * two_n;
}

}  // namespace mindcv_lite

#endif  // MINDCV_LITE_KERNELS_EXP_H_
