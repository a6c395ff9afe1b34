// The CUDA half of the c10d shim, compiled only when the venv has the CUDA runtime and NCCL
// headers (build.rs): ProcessGroupNCCL (its code is in libtorch_cuda) and the caching
// allocator's peak-memory counter. Machines without them compile dist_nocuda.cpp instead.

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

c10::intrusive_ptr<c10d::Backend> camel_make_nccl(const c10::intrusive_ptr<c10d::Store> &store,
                                                  int rank, int world, std::chrono::milliseconds timeout) {
  auto o = c10d::ProcessGroupNCCL::Options::create();
  o->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, o);
}

extern "C" {

int camel_has_nccl() { return 1; }

// Peak bytes allocated by the caching allocator on `device` since the start (or the last reset).
long long camel_cuda_peak_bytes(int device) {
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  } catch (...) {
    return -1;
  }
}

void camel_cuda_reset_peak(int device) {
  try {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device);
  } catch (...) {
  }
}

}  // extern "C"
