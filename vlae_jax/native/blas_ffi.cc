// XLA FFI handler: C = op(A) @ op(B) for float32 row-major matrices through a
// cblas_sgemm whose address Python hands over once (vlae_set_sgemm), so this
// file links no BLAS and builds against jaxlib's FFI headers alone.
//
// The BLAS runs single-threaded; the product is split into one block per
// thread of XLA's own intra-op pool. A BLAS with threads of its own would
// leave them spinning after each product, taking cores from the XLA ops that
// follow (measured: the mnist step 10% slower than with XLA's GEMM).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
// c, ldc) with 32-bit integers (an LP64 / "openblas32" BLAS).
using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int,
                       const float*, int, float, float*, int);
Sgemm sgemm = nullptr;

constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;
constexpr int64_t kMaxInt = 2147483647;
// Below this many multiply-adds a product runs in one piece: scheduling a
// block costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 21;

struct Product {
  bool transpose_a, transpose_b;
  int64_t m, n, k, lda, ldb;
  const float* a;
  const float* b;
  float* c;
  bool split_rows;  // blocks of C's rows, else of its columns
  int64_t block;    // rows (or columns) per block
  int64_t blocks;

  // Block i of C: rows (or columns) [i * block, min((i + 1) * block, m or n)).
  void Run(int64_t i) const {
    const int64_t extent = split_rows ? m : n;
    const int64_t begin = i * block;
    const int64_t size = std::min(block, extent - begin);
    if (size <= 0) return;
    const float* a_block = a;
    const float* b_block = b;
    float* c_block = c;
    int64_t rows = m, cols = n;
    if (split_rows) {
      a_block = transpose_a ? a + begin : a + begin * lda;
      c_block = c + begin * n;
      rows = size;
    } else {
      b_block = transpose_b ? b + begin * ldb : b + begin;
      c_block = c + begin;
      cols = size;
    }
    sgemm(kRowMajor, transpose_a ? kTrans : kNoTrans,
          transpose_b ? kTrans : kNoTrans, static_cast<int>(rows),
          static_cast<int>(cols), static_cast<int>(k), 1.0f, a_block,
          static_cast<int>(lda), b_block, static_cast<int>(ldb), 0.0f,
          c_block, static_cast<int>(n));
  }
};

// Blocks claimed by whichever thread gets to them first: the calling thread
// works through every unclaimed block itself, so it never waits on a pool
// task that cannot start (every pool thread busy in its own product).
struct Work {
  Product product;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;

  void Drain() {
    int64_t i;
    while ((i = next.fetch_add(1)) < product.blocks) {
      product.Run(i);
      if (done.fetch_add(1) + 1 == product.blocks) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
};

ffi::Error SgemmImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                     ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> c,
                     bool transpose_a, bool transpose_b) {
  if (sgemm == nullptr) {
    return ffi::Error::Internal("vlae_sgemm: no BLAS registered");
  }
  auto a_dims = a.dimensions();
  auto b_dims = b.dimensions();
  if (a_dims.size() != 2 || b_dims.size() != 2) {
    return ffi::Error::InvalidArgument("vlae_sgemm: operands must be 2-D");
  }
  const int64_t m = transpose_a ? a_dims[1] : a_dims[0];
  const int64_t k = transpose_a ? a_dims[0] : a_dims[1];
  const int64_t k_b = transpose_b ? b_dims[1] : b_dims[0];
  const int64_t n = transpose_b ? b_dims[0] : b_dims[1];
  if (k != k_b) {
    return ffi::Error::InvalidArgument("vlae_sgemm: inner dimensions differ");
  }
  if (m > kMaxInt || n > kMaxInt || k > kMaxInt || a_dims[1] > kMaxInt ||
      b_dims[1] > kMaxInt) {
    return ffi::Error::InvalidArgument("vlae_sgemm: dimension over 2^31 - 1");
  }
  float* out = c->typed_data();
  if (m == 0 || n == 0) return ffi::Error::Success();
  if (k == 0) {
    std::memset(out, 0, sizeof(float) * m * n);
    return ffi::Error::Success();
  }
  auto work = std::make_shared<Work>();
  Product& p = work->product;
  p = Product{transpose_a, transpose_b, m, n, k, a_dims[1], b_dims[1],
              a.typed_data(), b.typed_data(), out, m >= n, 0, 1};
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t extent = p.split_rows ? m : n;
  int64_t blocks = m * n * k < kMinParallelWork ? 1 : threads;
  // Blocks of whole 16-row (or column) panels, the BLAS kernels' unit.
  p.block = ((extent + blocks - 1) / blocks + 15) / 16 * 16;
  p.blocks = (extent + p.block - 1) / p.block;
  for (int64_t i = 1; i < p.blocks; ++i) {
    pool.Schedule([work] { work->Drain(); });
  }
  work->Drain();
  std::unique_lock<std::mutex> lock(work->mutex);
  work->finished.wait(lock, [&] { return work->done.load() == p.blocks; });
  return ffi::Error::Success();
}

}  // namespace

extern "C" void vlae_set_sgemm(void* function) {
  sgemm = reinterpret_cast<Sgemm>(function);
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(VlaeSgemm, SgemmImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));
