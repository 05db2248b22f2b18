// oneDNN's single-precision GEMM for the CPU kernels, from the libdnnl.so.3 MindSpore ships and has already loaded:
// resolved at run time, so the package builds without MindSpore's headers or libraries.
#ifndef MINDCV_LITE_KERNELS_GEMM_H_
#define MINDCV_LITE_KERNELS_GEMM_H_

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>

namespace mindcv_lite {

// dnnl_threadpool_interop_sgemm from oneDNN's dnnl_threadpool.h: row-major C = alpha op(A) op(B) + beta C, returns
// dnnl_status_t (0 = success). A null threadpool runs it on the calling thread (plain dnnl_sgemm would use whatever
// threadpool MindSpore left active on that thread), so kernels split their work over threads themselves.
using Sgemm = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc, void *threadpool);

// The GEMM, or nullptr (reported once on stderr) when this process has not loaded oneDNN.
inline Sgemm FindSgemm() {
  static const Sgemm sgemm = [] {
    void *library = dlopen("libdnnl.so.3", RTLD_NOW | RTLD_NOLOAD);
    void *symbol = dlsym(library != nullptr ? library : RTLD_DEFAULT, "dnnl_threadpool_interop_sgemm");
    if (symbol == nullptr) {
      std::fprintf(stderr, "mindcv_lite CPU kernels: oneDNN's dnnl_threadpool_interop_sgemm was not found in this "
                           "process (MindSpore's CPU backend loads libdnnl.so.3); use the layers' 'native' "
                           "formulation\n");
    }
    return reinterpret_cast<Sgemm>(symbol);
  }();
  return sgemm;
}

}  // namespace mindcv_lite

#endif  // MINDCV_LITE_KERNELS_GEMM_H_
