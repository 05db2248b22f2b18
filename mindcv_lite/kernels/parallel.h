// Shared helpers of the CPU kernels: a row-parallel loop over the process's CPUs, per-ISA vectorised clones, the
// float32 check of an aot call's dtypes and the calls' return codes.
#ifndef MINDCV_LITE_KERNELS_PARALLEL_H_
#define MINDCV_LITE_KERNELS_PARALLEL_H_

#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// The package is compiled for the generic ISA at install time; the hot loops get AVX2+FMA and AVX-512 clones picked
// at load time (GCC function multi-versioning), so one build runs well on any x86-64 CPU.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MINDCV_VECTORIZE __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MINDCV_VECTORIZE
#endif

namespace mindcv_lite {

// Return codes of the aot entry points (MindSpore reports them as "Return value from CPU AOT kernel ... is N").
constexpr int kBadShapes = 1, kNotFloat32 = 2, kNoGemm = 3, kGemmFailed = 4;

// True when every input and output of an aot call is float32 (the only type the kernels compute in).
inline bool AllFloat32(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i) {
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  return true;
}

// Threads for `work` independent items: the CPUs this process may run on (taskset/cgroup aware), at most `work`.
inline int NumThreads(int64_t work) {
  cpu_set_t cpus;
  int available = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(available, work)));
}

// fn(thread, begin, end) over contiguous slices of [0, work); the calling thread takes slice 0.
template <typename Fn>
void ParallelFor(int64_t work, Fn fn, int threads = 0) {
  if (threads <= 0) threads = NumThreads(work);
  const int64_t chunk = (work + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    pool.emplace_back(fn, t, std::min(work, t * chunk), std::min(work, (t + 1) * chunk));
  }
  fn(0, 0, std::min(work, chunk));
  for (auto &thread : pool) thread.join();
}

}  // namespace mindcv_lite

#endif  // MINDCV_LITE_KERNELS_PARALLEL_H_
